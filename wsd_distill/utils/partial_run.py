"""Resumable chunked jobs (proposal generation, the teacher cache): each finished chunk of items
is a file in ``<output>.partial/``, written atomically, beside a manifest of the job's settings
and a lock naming the process at work. A killed job restarts at the first missing chunk (a chunk
damaged since it was written, found by its zip CRCs on resume, is made again); a job with other
settings is refused (unless the other wrote no chunk), and so is a second process while the
first is alive."""

import glob
import io
import json
import logging
import os
import zipfile

import numpy as np

from .atomic_write import atomic_write_bytes, refuse_links
from .ragged_store import is_running

logger = logging.getLogger(__name__)


class OutputInUse(RuntimeError):
    """An output that another live job writes, or holds an unfinished job of other settings."""


def lock_folder(folder):
    """Take ``<folder>/lock`` (this process's id) unless a live process holds it: two jobs on
    one output would redo and remove each other's files. A lock of a process that has ended
    (killed, crashed) is taken over. A folder holding a link is refused (``refuse_links``).
    Returns the lock file's path."""
    os.makedirs(folder, exist_ok=True)
    refuse_links(folder)
    lock = os.path.join(folder, "lock")
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(lock) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid == os.getpid():
                return lock
            if pid and is_running(pid):
                raise OutputInUse(
                    f"{folder} is being written by process {pid} (its lock file {lock}): wait "
                    f"for it to finish, or stop it, before starting this run again"
                )
            os.remove(lock)  # its process has ended
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock


def open_partial_run(output, manifest, num_items, chunk_size):
    """Start or resume the job writing ``output``: returns ``[(chunk file, start, end)]`` of
    all its chunks, in order; those whose file exists are done. Raises if ``<output>.partial/``
    holds a run with another manifest."""
    partial = f"{os.path.normpath(output)}.partial"
    manifest = {**manifest, "num_items": num_items, "chunk_size": chunk_size}
    manifest_file = os.path.join(partial, "manifest.json")
    if os.path.islink(partial):
        raise ValueError(f"{partial} is a symbolic link: a job never writes through one")
    lock_folder(partial)
    if os.path.exists(manifest_file) and not glob.glob(os.path.join(partial, "chunk_*.npz")):
        logger.info(f"{partial}: the run started there wrote no chunk; starting this one")
        os.remove(manifest_file)
    if os.path.exists(manifest_file):
        with open(manifest_file) as f:
            previous = json.load(f)
        if previous != json.loads(json.dumps(manifest)):
            raise OutputInUse(
                f"{partial} holds an unfinished run with other settings ({previous}); this run "
                "asks for "
                f"{manifest}. Delete {partial} to start over, or rerun with the same arguments to "
                "resume."
            )
        for chunk in sorted(glob.glob(os.path.join(partial, "chunk_*.npz"))):
            _drop_if_damaged(chunk)
    else:
        atomic_write_bytes(manifest_file, json.dumps(manifest).encode())
    return [
        (os.path.join(partial, f"chunk_{k:06d}.npz"), s, min(s + chunk_size, num_items))
        for k, s in enumerate(range(0, num_items, chunk_size))
    ]


def _drop_if_damaged(chunk):
    """Remove the chunk file ``chunk`` (to be made again) if it is no whole zip whose members
    match their CRCs: cut short or changed since it was written."""
    try:
        with zipfile.ZipFile(chunk) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        bad = str(e)
    if bad is not None:
        logger.warning(f"{chunk} is damaged ({bad}): removed, it is made again")
        os.remove(chunk)


def write_chunk(path, per_item, rows):
    """Write one chunk file atomically: ``per_item`` {name: [N, ...] array, one entry per item} and
    ``rows`` {name: N arrays [R_i, ...]} (or {}), each concatenated, with the items' row
    ``counts``."""
    counts = [len(a) for a in next(iter(rows.values()), ())]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        counts=np.array(counts),
        **per_item,
        **{name: np.concatenate(a) for name, a in rows.items()},
    )
    atomic_write_bytes(path, buffer.getvalue())


def read_chunk(path, per_item, rows):
    """The items of a chunk file written by :func:`write_chunk`: one tuple per item, its
    entries of the ``per_item`` arrays, then its rows of the ``rows`` arrays."""
    try:
        with np.load(path) as chunk:
            splits = np.cumsum(chunk["counts"])[:-1]
            columns = [chunk[name] for name in per_item] + [
                np.split(chunk[name], splits) for name in rows
            ]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"Chunk {path} cannot be read ({e}): it was damaged after it was written; run the "
            "same command again to make it again"
        ) from None
    return list(zip(*columns))
