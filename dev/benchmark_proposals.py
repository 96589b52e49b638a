#!/usr/bin/env python
"""Proposal speed. Parts:

- loading: a detectron2 proposal pickle vs the proposal store at a simulated COCO scale
  (123,287 images x 2,000 random boxes by default): open time, per-image fetch, DataLoader
  throughput and peak memory with 4 workers, each in a fresh process.
- generation: EdgeBoxes and selective search images/s (``generate_proposal_file``, the code of
  tools/generate_proposals.py), 1 and all workers, on 128 px and 512 px images.

    python dev/benchmark_proposals.py --parts loading generation --output output/benchmark
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import multiprocessing as mp
import os
import pickle
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np
import torch
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.structures import BoxMode

from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.data.proposals import fetch_proposals, load_proposals_into_dataset, save_proposals

from benchmark_common import benchmark_parser, run_parts


def simulate_proposal_files(folder, num_images, boxes_per_image, store_dtype):
    """Random proposals for ``num_images`` images as a detectron2 pickle and a proposal store
    (reused when present: see --keep-loading-files); returns ``(dataset dicts, {kind: path})``."""
    dicts = [
        {
            "image_id": i,
            "file_name": f"{i:012d}.jpg",
            "height": 480,
            "width": 640,
            "multi_labels": [i % 80],
        }
        for i in range(num_images)
    ]
    files = {
        "pickle": os.path.join(folder, f"sim_{num_images}x{boxes_per_image}.pkl"),
        "store": os.path.join(folder, f"sim_{num_images}x{boxes_per_image}_{store_dtype}"),
    }

    def proposals():
        for i in range(num_images):
            rng = np.random.default_rng(i)
            xy = rng.uniform(0, [560, 400], (boxes_per_image, 2)).astype(np.float32)
            wh = rng.uniform(8, 80, (boxes_per_image, 2)).astype(np.float32)
            yield np.concatenate([xy, xy + wh], 1), -np.arange(boxes_per_image, dtype=np.float32)

    ids = [d["image_id"] for d in dicts]
    if not os.path.exists(files["store"]):
        save_proposals(files["store"], ids, proposals(), store_dtype)
    if not os.path.exists(files["pickle"]):
        boxes, logits = zip(
            *proposals()
        )  # written as pickle.dump does, without the bytes copy of save_proposals
        with open(files["pickle"] + ".tmp", "wb") as f:
            pickle.dump(
                {
                    "ids": ids,
                    "boxes": list(boxes),
                    "objectness_logits": list(logits),
                    "bbox_mode": BoxMode.XYXY_ABS,
                },
                f,
                protocol=4,
            )
        del boxes, logits
        os.replace(files["pickle"] + ".tmp", files["pickle"])
    return dicts, files


def _memory_total_gb():
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 2**20


def _memory(pids):
    """(RSS, PSS) in bytes summed over ``pids`` (Linux /proc; PSS splits shared pages between
    processes)."""
    total = {"Rss": 0, "Pss": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    key, value = line.split(":", 1)
                    if key in total:
                        total[key] += int(value.split()[0]) * 1024
        except FileNotFoundError:  # a worker that has exited
            pass
    return total["Rss"], total["Pss"]


class _ProposalsOnly:
    """What a data-loader worker does with proposals: the image's boxes as a tensor."""

    def __init__(self):
        self.stores = {}

    def __call__(self, d):
        d = fetch_proposals(d, self.stores)
        return torch.as_tensor(d["proposal_boxes"])


def measure_loading(dicts, proposal_file, workers, batches, batch_size):
    """In a fresh process: open time, per-image fetch time, proposals/s through a DataLoader with
    ``workers`` workers (detectron2's serialized DatasetFromList), and its peak memory."""
    start = time.perf_counter()
    dicts = load_proposals_into_dataset(dicts, proposal_file)
    open_s = time.perf_counter() - start
    open_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dataset = DatasetFromList(dicts, copy=False, serialize=True)
    del dicts
    fetch, order = _ProposalsOnly(), np.random.default_rng(0).permutation(len(dataset))[:2000]
    fetch_ms = []
    for _ in range(2):  # first read (the store's pages may come from disk), then again (page cache)
        start = time.perf_counter()
        for i in order:
            fetch(dataset[int(i)])
        fetch_ms.append(1000 * (time.perf_counter() - start) / len(order))
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=batches * batch_size)
    loader = torch.utils.data.DataLoader(
        MapDataset(dataset, fetch),
        batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=trivial_batch_collator,
        multiprocessing_context="fork",
    )  # as on Linux by default
    peak, start = (0, 0), time.perf_counter()
    iterator = iter(loader)
    pids = [os.getpid(), *(w.pid for w in iterator._workers)]
    for k, _ in enumerate(iterator):
        if k % 10 == 0:
            peak = max(peak, _memory(pids), key=lambda m: m[1])
    images_per_s = batches * batch_size / (time.perf_counter() - start)
    rss, pss = peak
    return {
        "open_s": open_s,
        "open_rss_gb": open_rss / 2**30,
        "fetch_ms": fetch_ms,
        "images_per_s": images_per_s,
        "peak_rss_gb": rss / 2**30,
        "peak_pss_gb": pss / 2**30,
    }


def _in_fresh_process(fn, *args):
    """``fn(*args)`` in a new process, so that its memory is its own (None if it was killed, e.g.
    out of memory)."""
    try:
        with ProcessPoolExecutor(1, mp.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        return None


def benchmark_loading(args):
    dicts, files = _in_fresh_process(
        simulate_proposal_files,
        args.loading_dir,
        args.loading_images,
        args.loading_boxes,
        args.store_dtype,
    )
    rows = []
    for kind, path in files.items():
        r = _in_fresh_process(measure_loading, dicts, path, 4, 100, 32)
        size = (
            sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
            if os.path.isdir(path)
            else os.path.getsize(path)
        )
        if r is None:
            rows.append(
                [
                    kind,
                    f"{size / 2**30:.2f}",
                    f"killed (out of memory, {_memory_total_gb():.0f} GB machine)",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        rows.append(
            [
                kind + (f" ({args.store_dtype})" if kind == "store" else " (float32)"),
                f"{size / 2**30:.2f}",
                f"{r['open_s']:.2f}",
                f"{r['open_rss_gb']:.2f}",
                f"{r['fetch_ms'][0]:.3f} / {r['fetch_ms'][1]:.3f}",
                f"{r['images_per_s']:.0f}",
                f"{r['peak_rss_gb']:.2f}",
                f"{r['peak_pss_gb']:.2f}",
            ]
        )
    if not args.keep_loading_files:  # ~7 GB at COCO scale
        for path in files.values():
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    headers = [
        "proposal file",
        "size GB",
        "open s",
        "peak RSS opening GB",
        "fetch ms/img (first / cached)",
        "loader img/s (4 workers)",
        "peak RSS GB (sum)",
        "peak PSS GB (sum)",
    ]
    title = f"Proposal loading, {args.loading_images} images x {args.loading_boxes} random boxes"
    return title, headers, rows


def benchmark_generation(args):
    """Proposal generation images/s by method and worker count, on 128 px and 512 px images."""
    rows = []
    for size, count in ((128, 200), (512, 16)):
        folder = os.path.join(args.output, "proposal_images", str(size))
        os.makedirs(folder, exist_ok=True)
        dicts = []
        for i in range(count):
            file_name = os.path.join(folder, f"{i:04d}.png")
            if not os.path.exists(file_name):
                cv2.imwrite(
                    file_name, render_image(np.random.default_rng(i), size, distractors=(6, 12))[0]
                )
            dicts.append({"image_id": i, "file_name": file_name})
        for method in ("edge_boxes", "selective_search"):
            for workers in sorted({1, os.cpu_count()}):
                output = os.path.join(folder, f"{method}_{workers}")
                shutil.rmtree(output, ignore_errors=True)
                stats = generate_proposal_file(
                    dicts, output, method, {"max_proposals": 500}, workers=workers, chunk_size=4
                )
                rows.append(
                    [
                        f"{size}x{size} ({count})",
                        method,
                        workers,
                        f"{stats['images_per_s']:.1f}",
                        f"{stats['images_per_s_per_worker']:.1f}",
                        f"{stats['boxes_per_image']:.0f}",
                    ]
                )
    headers = [
        "images",
        "method",
        "workers",
        "images/s (wall, with worker start-up)",
        "images/s per worker",
        "boxes/img",
    ]
    return "Proposal generation (500 boxes, synthetic images)", headers, rows


PARTS = {"loading": benchmark_loading, "generation": benchmark_generation}


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, PARTS, ["generation"])
    parser.add_argument(
        "--loading-dir",
        default="output/benchmark/proposals",
        help="where the simulated proposal files go",
    )
    parser.add_argument(
        "--loading-images",
        type=int,
        default=123287,
        help="simulated dataset size (COCO-2014 train+val)",
    )
    parser.add_argument("--loading-boxes", type=int, default=2000, help="proposals per image")
    parser.add_argument(
        "--keep-loading-files",
        action="store_true",
        help="keep the simulated files for the next run",
    )
    parser.add_argument("--store-dtype", choices=["float16", "float32"], default="float16")
    run_parts(parser.parse_args(), PARTS)
