"""Run a proposal generator over a dataset: parallel, resumable, written atomically.

Work is split into chunks of images; each finished chunk is an ``.npz`` in
``<output>.partial/`` (written to a temporary name, then renamed), so a killed run resumes
at the first missing chunk. The output (a proposal store, or a detectron2 pickle if it ends
with ``.pkl``) appears at ``<output>`` only once every image is done, and the partial folder
is then removed.
"""

import logging
import multiprocessing as mp
import os
import shutil
import time

import cv2
from tqdm import tqdm

from ..data.image_files import read_image
from ..data.proposals import image_records, save_proposals
from ..utils.digests import ids_digest
from ..utils.partial_run import open_partial_run, read_chunk, write_chunk
from . import build_box_proposer

logger = logging.getLogger(__name__)

_generator = None  # one per worker process


def _init_worker(method, generator_kwargs):
    global _generator
    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    _generator = build_box_proposer(method, **generator_kwargs)


def _run_chunk(task):
    """Generate proposals for one chunk of dataset dicts and write its .npz; a chunk with an
    unreadable image (or one of another size than the dataset says) is not written. Returns
    (images, seconds, [the errors of its bad images])."""
    path, items = task
    start = time.perf_counter()
    boxes, logits, bad = [], [], []
    for d in items:
        try:
            b, s = _generator(read_image(d, "BGR"))
        except OSError as e:
            bad.append(str(e))
            continue
        boxes.append(b)
        logits.append(s)
    if not bad:
        write_chunk(path, {}, {"boxes": boxes, "logits": logits})
    return len(items), time.perf_counter() - start, bad


def generate_proposal_file(
    dataset_dicts, output, method, generator_kwargs, workers=1, chunk_size=16, dtype="float32"
):
    """Write proposals for every image of ``dataset_dicts`` to ``output`` (see ``save_proposals``;
    ``dtype`` is the store's).

    Resumes from ``<output>.partial/`` when it was started with the same method, parameters
    and images (an error otherwise, so results of two settings never mix).
    Returns ``{"images", "seconds", "images_per_s", "images_per_s_per_worker"}`` for this run.
    """
    output = os.path.normpath(output)  # ("prop/": the store prop, its chunks in prop.partial/)
    names = image_records(dataset_dicts)["image_names"]
    images = [f"{d['image_id']}\t{name}" for d, name in zip(dataset_dicts, names)]
    keys = ("image_id", "file_name", "height", "width")
    items = [{k: d[k] for k in keys if k in d} for d in dataset_dicts]
    partial = f"{output}.partial"
    manifest = {"method": method, "generator": generator_kwargs, "images_sha1": ids_digest(images)}
    chunks = [
        (path, items[s:e])
        for path, s, e in open_partial_run(output, manifest, len(items), chunk_size)
    ]
    todo = [c for c in chunks if not os.path.exists(c[0])]
    done_images = len(items) - sum(len(c[1]) for c in todo)
    if done_images:
        logger.info(f"Resuming {output}: {done_images} of {len(items)} images already done")
    start, worker_seconds, processed, bad = time.perf_counter(), 0.0, 0, []
    with tqdm(total=len(items), initial=done_images, desc=f"{method} proposals", unit="img") as bar:
        if workers <= 1:
            _init_worker(method, generator_kwargs)
            results = map(_run_chunk, todo)
            pool = None
        else:
            # spawn, not fork: a forked child deadlocks in OpenCV or torch thread pools the parent
            # used
            pool = mp.get_context("spawn").Pool(workers, _init_worker, (method, generator_kwargs))
            results = pool.imap_unordered(_run_chunk, todo)
        try:
            for n, seconds, errors in results:
                processed += n
                worker_seconds += seconds
                bad += errors
                bar.update(n)
        finally:
            if pool is not None:
                pool.terminate()
    elapsed = time.perf_counter() - start
    if bad:  # every bad image, not the first: a run over COCO must not stop at each in turn
        raise OSError(
            f"{len(bad)} images of {len(items)} could not be used, so {output} was not written "
            f"(the other chunks are kept in {partial}; fix the images, then run again):\n"
            + "\n".join(bad)
        )

    box_counts = []

    def proposals():  # (boxes, logits) of every image, one chunk file in memory at a time
        for path, _ in chunks:
            for boxes, logits in read_chunk(path, (), ("boxes", "logits")):
                box_counts.append(len(boxes))
                yield boxes, logits

    meta = {"method": method, "generator": generator_kwargs, **image_records(dataset_dicts)}
    ids = [d["image_id"] for d in dataset_dicts]
    save_proposals(output, ids, proposals(), dtype, meta=meta)
    shutil.rmtree(partial)
    stats = {
        "images": processed,
        "seconds": elapsed,
        "images_per_s": processed / elapsed if processed else float("nan"),
        "images_per_s_per_worker": processed / worker_seconds if processed else float("nan"),
        "boxes_per_image": sum(box_counts) / max(len(ids), 1),
    }
    logger.info(f"Wrote {output}: {stats}")
    return stats
