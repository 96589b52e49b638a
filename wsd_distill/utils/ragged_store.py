"""RaggedStore: per-image arrays of varying length, memory-mapped from disk.

What the proposal store and the teacher cache are made of, at COCO scale (123k images x 2,000
boxes): opening reads a small index, fetching one image reads only that image's rows, and the
pages come from the OS page cache, shared by every data-loader worker and DDP rank on a machine.

A store is a folder::

    index.json    {"format": "wsd_distill.ragged_store", "version": 1, "keys": [key of image i],
                   "num_rows": T, "fields": {name: {"dtype", "shape", "per_image"}}, "meta": {...},
                   "crc32": {"offsets": crc, "rows": {name: [crc of image i's rows]}}}
    offsets.bin   int64 [N + 1]: image i owns rows offsets[i]:offsets[i + 1] of each field
    <name>.bin    dtype [T, *shape] (or [N, *shape] for a per_image field), rows back to back

The CRC-32s find a file changed after it was written (a flipped bit, a box moved to the next
image): ``offsets.bin`` is checked when the store is opened, an image's rows whenever they are
read (about 1 ms for 4 MB), every image's by :meth:`RaggedStore.verify`. Stores written
before the checksums were recorded are read unchecked.

It is built in ``<path>.tmp-<pid>/`` and renamed to ``<path>`` when complete, so a reader sees
either no store or a whole one.
"""

import glob
import json
import logging
import mmap
import os
import shutil
import zlib

import numpy as np

FORMAT, VERSION = "wsd_distill.ragged_store", 1
logger = logging.getLogger(__name__)


def is_ragged_store(path):
    return os.path.isfile(os.path.join(path, "index.json"))


def is_running(pid):
    """Whether process ``pid`` exists (a stale temporary folder or lock names a dead one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RaggedStoreWriter:
    """Write a store image by image::

        with RaggedStoreWriter(path, {"boxes": ("float32", (4,))}) as w:
            for key, boxes in ...:
                w.append(key, boxes=boxes)

    Args:
        fields: name -> (dtype, row shape) or (dtype, row shape, per_image); a per_image field
            takes exactly one row per image (e.g. soft scores [K]), the others any number.
        meta (dict): saved in the index (e.g. how the content was made).
    """

    def __init__(self, path, fields, meta=None):
        self.path = path.rstrip("/")
        if os.path.lexists(self.path) and not (
            os.path.isdir(self.path) and not os.path.islink(self.path) and is_ragged_store(path)
        ):
            raise FileExistsError(
                f"{self.path} exists and is not a store: a store replaces only a store (give "
                "another path, or move it away)"
            )
        self.tmp = f"{self.path}.tmp-{os.getpid()}"
        for stale in glob.glob(
            f"{glob.escape(self.path)}.tmp-*"
        ):  # ours, or left by a killed writer
            pid = stale.rsplit("-", 1)[1]
            if pid.isdigit() and (int(pid) == os.getpid() or not is_running(int(pid))):
                shutil.rmtree(stale, ignore_errors=True)
        os.makedirs(self.tmp)
        self.fields = {}
        for name, spec in fields.items():
            dtype, shape, per_image = (*spec, False) if len(spec) == 2 else spec
            self.fields[name] = {
                "dtype": np.dtype(dtype).name,
                "shape": list(shape),
                "per_image": bool(per_image),
            }
        self.meta = meta or {}
        self.keys, self.offsets = [], [0]
        self.crc32 = {name: [] for name in self.fields}
        self.files = {
            name: open(os.path.join(self.tmp, f"{name}.bin"), "wb") for name in self.fields
        }

    def append(self, key, **arrays):
        if set(arrays) != set(self.fields):
            raise ValueError(
                f"Image {key!r}: got fields {sorted(arrays)}, the store has {sorted(self.fields)}"
            )
        rows = None
        for name, spec in self.fields.items():
            a = np.asarray(arrays[name], dtype=spec["dtype"])
            shape = tuple(spec["shape"])
            a = a.reshape(1 if spec["per_image"] else -1, *shape)
            if not spec["per_image"]:
                if rows is not None and len(a) != rows:
                    raise ValueError(
                        f"Image {key!r}: fields have different numbers of rows ({rows} and "
                        f"{len(a)} in {name})"
                    )
                rows = len(a)
            data = np.ascontiguousarray(a).tobytes()
            self.files[name].write(data)
            self.crc32[name].append(zlib.crc32(data))
        self.keys.append(key)
        self.offsets.append(self.offsets[-1] + (rows or 0))

    def close(self):
        """Flush everything and publish the store at ``path`` (replacing an existing one)."""
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        offsets = np.asarray(self.offsets, dtype=np.int64).tobytes()
        with open(os.path.join(self.tmp, "offsets.bin"), "wb") as f:
            f.write(offsets)
            f.flush()
            os.fsync(f.fileno())
        index = {
            "format": FORMAT,
            "version": VERSION,
            "keys": self.keys,
            "num_rows": self.offsets[-1],
            "fields": self.fields,
            "meta": self.meta,
            "crc32": {"offsets": zlib.crc32(offsets), "rows": self.crc32},
        }
        with open(os.path.join(self.tmp, "index.json"), "w") as f:
            json.dump(index, f)
            f.flush()
            os.fsync(f.fileno())
        old = f"{self.path}.old-{os.getpid()}"
        if os.path.exists(self.path):
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self):
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.abort() if exc_type else self.close()


class RaggedStore:
    """Read-only view of a store; checks its files' sizes and offsets when opened.

    Memory maps are opened on first access in each process (and dropped when pickled), so a
    store can be handed to data-loader workers, forked or spawned.
    """

    def __init__(self, path):
        self.path = path
        index_file = os.path.join(path, "index.json")
        if not os.path.isfile(index_file):
            raise FileNotFoundError(
                f"{path} is not a store: no {index_file} (a store folder is complete only once it "
                "has one)"
            )
        try:
            with open(index_file) as f:
                index = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Corrupt store {path}: index.json is not valid JSON ({e})") from None
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ValueError(
                f"{path}: format {index.get('format')!r} v{index.get('version')}, expected "
                f"{FORMAT!r} v{VERSION}"
            )
        self.keys = [tuple(k) if isinstance(k, list) else k for k in index["keys"]]
        self.num_rows, self.fields, self.meta = index["num_rows"], index["fields"], index["meta"]
        self._check_sizes()
        with open(os.path.join(path, "offsets.bin"), "rb") as f:
            data = f.read()
        checksums = index.get("crc32")
        if checksums is None:
            logger.warning(
                f"Store {path} records no checksums (it was written by an older wsd-distill): a "
                "file damaged since would go unnoticed; make it again to have it checked"
            )
        elif zlib.crc32(data) != checksums["offsets"]:
            raise ValueError(
                f"Corrupt store {path}: offsets.bin does not match the checksum recorded when it "
                "was written (changed or damaged since): make the store again"
            )
        self.crc32 = checksums and {  # {name: uint32 [N]}, or None (an older store)
            name: np.asarray(c, np.uint32) for name, c in checksums["rows"].items()
        }
        offsets = np.frombuffer(data, dtype=np.int64)
        if offsets[0] != 0 or offsets[-1] != self.num_rows or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"Corrupt store {path}: offsets.bin is not a row index from 0 to {self.num_rows}"
            )
        self.offsets = offsets
        self._maps = {}
        self._rows_of_key = None

    def _check_sizes(self):
        expected = {"offsets": (len(self.keys) + 1) * 8}
        for name, spec in self.fields.items():
            rows = len(self.keys) if spec["per_image"] else self.num_rows
            expected[name] = (
                rows
                * int(np.prod(spec["shape"], dtype=np.int64))
                * np.dtype(spec["dtype"]).itemsize
            )
        for name, size in expected.items():
            file = os.path.join(self.path, f"{name}.bin")
            actual = os.path.getsize(file) if os.path.isfile(file) else None
            if actual != size:
                raise ValueError(
                    f"Corrupt store {self.path}: {file} has {actual} bytes, the index says {size}"
                )

    def __len__(self):
        return len(self.keys)

    def __getstate__(self):
        return {**self.__dict__, "_maps": {}}

    def row_of(self, key):
        """Position of the image ``key`` in the store (KeyError if absent)."""
        if self._rows_of_key is None:
            self._rows_of_key = {k: i for i, k in enumerate(self.keys)}
        return self._rows_of_key[key]

    def _map(self, name):
        if name not in self._maps:
            spec = self.fields[name]
            rows = len(self.keys) if spec["per_image"] else self.num_rows
            shape, dtype = (rows, *spec["shape"]), np.dtype(spec["dtype"])
            if rows == 0:  # an empty file cannot be memory-mapped
                self._maps[name] = np.zeros(shape, dtype)
            else:  # a plain ndarray over the map: slicing it is cheaper than slicing an np.memmap
                with open(os.path.join(self.path, f"{name}.bin"), "rb") as f:
                    buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self._maps[name] = np.frombuffer(buffer, dtype).reshape(shape)
        return self._maps[name]

    def get(self, i, name, dtype=None):
        """Rows of image ``i`` (its position) in field ``name``, copied into memory (as ``dtype``,
        default the stored one) once their checksum is checked: [R_i, *shape], or [*shape] for
        a per_image field."""
        rows = self._checked_rows(i, name)
        return np.array(rows[0] if self.fields[name]["per_image"] else rows, dtype=dtype)

    def verify(self):
        """Check every image's rows against their checksums (reads the whole store)."""
        for i in range(len(self.keys)):
            for name in self.fields:
                self._checked_rows(i, name)

    def _checked_rows(self, i, name):
        start, end = (i, i + 1) if self.fields[name]["per_image"] else self.offsets[i : i + 2]
        rows = self._map(name)[start:end]
        if self.crc32 is not None and zlib.crc32(rows) != self.crc32[name][i]:
            raise ValueError(
                f"Corrupt store {self.path}: the rows of image {self.keys[i]!r} in {name}.bin do "
                "not match the checksum recorded when they were written (the file was changed or "
                "damaged since): make the store again"
            )
        return rows
