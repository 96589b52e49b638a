"""What ``tools/benchmark_*.py`` time, on generated data: the real trainer (its hooks, the
``TeacherHook`` included), the real test loader and mapper; and how each table is written."""

import argparse
import hashlib
import json
import os
import platform
import time

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import hooks
from detectron2.modeling import build_model
from tabulate import tabulate

from ..data.datasets.synthetic import render_image
from ..data.proposals import image_records, save_proposals
from ..utils import atomic_write_bytes
from .trainer import Trainer


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
    """The arguments of every ``tools/benchmark_*.py``: --parts (of ``parts``, ``default``),
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


def random_teacher(teacher_cfg, folder):
    """A run folder of ``teacher_cfg`` with random weights (its config.yaml and model_final.pth;
    speed does not depend on the weights), made once; returns ``folder``."""
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(os.path.join(folder, "model_final.pth")):
        model = build_model(teacher_cfg)
        DetectionCheckpointer(model, save_dir=folder).save("model_final")
    atomic_write_bytes(os.path.join(folder, "config.yaml"), teacher_cfg.dump().encode())
    return folder


class StepTimer(Trainer):
    """wsd-distill's ``Trainer`` without its checkpointer and evaluation hooks: every step
    as in training (data loader, ``TeacherHook``, AMP), nothing written."""

    def build_hooks(self):
        dropped = (hooks.PeriodicCheckpointer, hooks.EvalHook)
        return [h for h in super().build_hooks() if not isinstance(h, dropped)]


def median_step_times(cfg, warmup=5):
    """Train ``cfg`` for ``SOLVER.MAX_ITER`` steps; the median seconds per step after
    ``warmup`` steps of detectron2's ``time`` (the whole step), ``data_time`` (waiting for the
    batch, the teacher's forward included) and ``teacher_time``; and the peak GPU memory."""
    if cfg.MODEL.DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = StepTimer(cfg.clone())
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    if "time" not in history:  # detectron2's IterationTimer logs it from the third step on
        raise ValueError(f"SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}: too few steps to time")
    times = {
        k: float(np.median([v for v, it in history[k].values() if it >= warmup]))
        for k in ("time", "data_time", "teacher_time")
        if k in history
    }
    times.setdefault("teacher_time", 0.0)
    if cfg.MODEL.DEVICE == "cuda":
        times["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return times


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
