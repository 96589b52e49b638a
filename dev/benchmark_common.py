"""What ``dev/benchmark_*.py`` time, on generated data (the training steps:
``wsd_distill.pipeline.schedule.median_step_times``): the real test loader and mapper; and how
each table is written."""

import argparse
import hashlib
import json
import os
import platform
import time

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from tabulate import tabulate

from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.data.proposals import image_records, save_proposals
from wsd_distill.engine import Trainer
from wsd_distill.utils import atomic_write_bytes


def describe_machine(device):
    """ "<processor>, <n> CPUs, <t> torch threads, device <device> (<GPU name>)"."""
    processor = platform.processor() or platform.machine()
    machine = f"{processor}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    machine += f", device {device}"
    if device == "cuda":
        machine += f" ({torch.cuda.get_device_name()})"
    return machine


def write_table(output, part, title, headers, rows, machine):
    """Print the table and write it to ``output/<part>.md`` and ``.json``."""
    text = f"{title}, {machine}:\n\n{tabulate(rows, headers=headers, tablefmt='github')}\n"
    print(text, flush=True)
    os.makedirs(output, exist_ok=True)
    atomic_write_bytes(os.path.join(output, f"{part}.md"), text.encode())
    table = {"title": title, "machine": machine, "headers": headers, "rows": rows}
    atomic_write_bytes(os.path.join(output, f"{part}.json"), json.dumps(table, indent=1).encode())


def benchmark_parser(description, parts, default):
    """The arguments of every ``dev/benchmark_*.py``: --parts (of ``parts``, ``default``),
    --device, --threads, --output."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", nargs="+", choices=list(parts), default=default)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--output", default="output/benchmark")
    return parser


def run_parts(args, parts):
    """Each part of ``args.parts``: ``parts[name](args)`` -> (title, headers, rows), written by
    :func:`write_table`."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    machine = describe_machine(args.device)
    for name in args.parts:
        write_table(args.output, name, *parts[name](args), machine)


def seconds_per_call(fn, steps, device, warmup=2):
    """Median seconds of ``fn()`` over ``steps`` calls after ``warmup`` calls (a GPU is
    synchronized after each)."""
    times = []
    for _ in range(steps + warmup):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[warmup:]))


def jpeg_dataset(folder, count, height=480, width=640, num_classes=80, proposals=0):
    """``count`` generated scenes as JPEGs (quality 90) of ``height`` x ``width`` in ``folder``,
    registered with 1-3 labels each among ``num_classes`` (and, with ``proposals`` > 0, that
    many random boxes per image scored in (0, 1) as EdgeBoxes', in a proposal store); returns
    ``(dataset name, proposal store or None)``."""
    where = hashlib.sha1(os.path.abspath(folder).encode()).hexdigest()[:8]  # one per folder
    name = f"benchmark_jpegs_{count}_{height}x{width}_{num_classes}_{where}"
    dicts = []
    for i in range(count):
        file_name = os.path.join(folder, f"{height}x{width}_{i:05d}.jpg")
        if not os.path.exists(file_name):
            os.makedirs(folder, exist_ok=True)
            rng = np.random.default_rng(i)
            image, _ = render_image(rng, max(height, width), distractors=(6, 12))
            cv2.imwrite(file_name, image[:height, :width], [cv2.IMWRITE_JPEG_QUALITY, 90])
        labels = np.random.default_rng(i).choice(num_classes, 1 + i % 3, replace=False)
        dicts.append(
            {
                "file_name": file_name,
                "image_id": i,
                "height": height,
                "width": width,
                "multi_labels": sorted(int(k) for k in labels),
            }
        )
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).thing_classes = [f"class{k}" for k in range(num_classes)]
    if not proposals:
        return name, None
    store = os.path.join(folder, f"{name}_{proposals}_proposals")
    if not os.path.exists(store):
        rng = np.random.default_rng(0)

        def boxes():
            for _ in dicts:
                xy = rng.uniform(0, [width - 32, height - 32], (proposals, 2))
                wh = 16 + rng.uniform(0, 1, (proposals, 2)) * (np.array([width, height]) - 16 - xy)
                scores = np.sort(rng.uniform(0, 1, proposals))[::-1]
                yield np.concatenate([xy, xy + wh], 1), scores

        save_proposals(store, [d["image_id"] for d in dicts], boxes(), meta=image_records(dicts))
    return name, store


def loader_inputs(cfg, dataset, count):
    """The first ``count`` images of ``dataset`` as the test loader gives them to a model
    (``Trainer.build_test_loader``: the real mapper, proposals attached where the config loads
    them): a list of dicts, tensors on ``MODEL.DEVICE``."""
    inputs = []
    for batch in Trainer.build_test_loader(cfg, dataset):
        for x in batch:
            x["image"] = x["image"].to(cfg.MODEL.DEVICE)
            if "proposals" in x:
                x["proposals"] = x["proposals"].to(cfg.MODEL.DEVICE)
        inputs += batch
        if len(inputs) >= count:
            return inputs[:count]
    raise ValueError(f"{dataset} has {len(inputs)} images, fewer than {count}")
