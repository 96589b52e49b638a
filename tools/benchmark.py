#!/usr/bin/env python
"""Speed of wsd-distill, in one run; prints each table and writes it as Markdown and JSON to
--output (``<part>.md``, ``<part>.json``). Parts (--parts, default all):

- inference: images/s of the student alone vs the teacher (proposals given) vs the teacher with
  proposal generation, at the paper's sizes (student 224, teacher 672 with 500 EdgeBoxes
  proposals, ResNet-50) and at the demo's (configs/Synthetic); random weights.
- training: s/step of the plain student, the teacher, online KD (joint) and KD from the teacher
  cache (the authors' stage 1 and stage 2, and joint) (demo configs, 256 generated images, 500
  EdgeBoxes proposals each, random teacher weights), in rounds.
- train_loader: the training data loader alone, in-process and with 2 workers, with and
  without aspect-ratio grouping.
- loading: a detectron2 proposal pickle vs the proposal store at a simulated COCO scale
  (123,287 images x 2,000 random boxes by default): open time, per-image fetch, DataLoader
  throughput and peak memory with 4 workers, each in a fresh process.
- proposals: EdgeBoxes and selective search images/s, 1 and all workers.
- jpeg_to_scores: JPEG files to the VGG-16 student's scores at 224 through the test loader, the
  loader resizing to the teacher's 672 first (``MODEL.STUDENT.TEST_RESIZE`` "model", the default)
  or straight to 224 ("loader"): what a deployed student costs.
- paper: the paper's VGG-16 teacher (672, 500 proposals) and student (224) at --paper-batch
  (the authors' 32): one training step of each model and of the KD stages, the teacher's
  forward, and inference images/s, on batches made once on the device (no data loading;
  random weights and boxes, so it needs no EdgeBoxes: the part ``make gpu-check`` runs).

    python tools/benchmark.py --device cpu --output output/benchmark
"""

import wsd_distill  # noqa: F401  isort: skip  (first: it quiets detectron2's import warnings)
import argparse
import json
import multiprocessing as mp
import os
import pickle
import platform
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from tabulate import tabulate

from wsd_distill.box_proposers import build_box_proposer
from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data.datasets import generate_synthetic_shapes, register_synthetic_shapes
from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.data.proposals import (
    fetch_proposals,
    load_proposals_into_dataset,
    save_proposals,
)
from wsd_distill.data.teacher_targets import teacher_target_settings
from wsd_distill.engine import Trainer, setup_cfg
from wsd_distill.engine.teacher_cache_writer import write_teacher_cache
from wsd_distill.modeling.teacher import teacher_targets
from wsd_distill.utils import atomic_write_bytes

CACHED_STAGE_1 = "cached KD, stage 1 (L_f)"
CACHED_STAGE_2 = "cached KD, stage 2 (L_p + L_p')"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {  # name: (teacher config, student config, teacher image (h, w), proposals)
    "paper (R-50, 672 / 224)": ("COCO/T-WDet_R50.yaml", "COCO/S-Cls_R50.yaml", (672, 896), 500),
    "demo (narrow VGG, 128 / 64)": (
        "Synthetic/T-WDet.yaml",
        "Synthetic/S-Cls.yaml",
        (128, 128),
        64,
    ),
}


def load(config, device):
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device]
    )
    return build_model(cfg).eval(), cfg


def images_per_s(fn, inputs, min_seconds, device):
    """Run ``fn`` on each input (after 2 warm-up calls) for at least ``min_seconds``."""
    with torch.inference_mode():
        for x in inputs[:2]:
            fn(x)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds or count < 3:
            fn(inputs[count % len(inputs)])
            count += 1
        if device == "cuda":
            torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def benchmark_inference(args):
    rng = np.random.default_rng(0)
    rows = []
    for name, (teacher_config, student_config, (h, w), num_proposals) in SETTINGS.items():
        teacher, _ = load(teacher_config, args.device)
        student, student_cfg = load(student_config, args.device)
        images = [render_image(rng, max(h, w), distractors=(6, 12))[0][:h, :w] for _ in range(4)]
        generator = build_box_proposer("edge_boxes", max_proposals=num_proposals)
        proposals_per_s = 1.0 / np.mean([_timed(generator, im) for im in images])
        inputs = [_model_input(im, generator(im)[0], args.device) for im in images]
        small = student_cfg.MODEL.STUDENT.INPUT_SIZE
        student_inputs = [
            {"image": torch.as_tensor(im[:small, :small].transpose(2, 0, 1).copy()).to(args.device)}
            for im in images
        ]
        student_speed = images_per_s(
            lambda x: student([x]), student_inputs, args.seconds, args.device
        )
        # normalized, resized
        bare_inputs = [student.preprocess_image([x])[0].tensor for x in student_inputs]
        in_feature = student_cfg.MODEL.STUDENT.IN_FEATURE
        bare_speed = images_per_s(
            lambda t: student.classifier(student.head(student.backbone(t)[in_feature])),
            bare_inputs,
            args.seconds,
            args.device,
        )
        teacher_speed = images_per_s(lambda x: teacher([x]), inputs, args.seconds, args.device)
        with_proposals = 1.0 / (1.0 / teacher_speed + 1.0 / proposals_per_s)
        rows.append(
            [
                name,
                f"{student_speed:.1f}",
                f"{bare_speed:.1f}",
                f"{teacher_speed:.2f}",
                f"{with_proposals:.2f}",
                f"{student_speed / with_proposals:.0f}x",
            ]
        )
    headers = [
        "setting",
        "student img/s",
        "bare backbone + head + linear img/s",
        "teacher img/s (proposals given)",
        "teacher + EdgeBoxes img/s",
        "student / teacher+proposals",
    ]
    return "Inference, batch 1", headers, rows


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


def _train_cfg(config, output_dir, opts):
    fixed = ["OUTPUT_DIR", output_dir, "SEED", 0, "DATASETS.TEST", (), "SOLVER.CHECKPOINT_PERIOD"]
    return setup_cfg(os.path.join(ROOT, "configs", "Synthetic", config), [*fixed, 10**6, *opts])


def _step_times(cfg):
    """Median seconds per training step, data time and teacher time, after 5 warm-up steps."""
    trainer = Trainer(cfg.clone())
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    median = {
        k: (
            float(np.median([v for v, it in history[k].values() if it >= 5]))
            if k in history
            else 0.0
        )
        for k in ("time", "data_time", "teacher_time")
    }
    return median


def _training_runs(args):
    """The configs of the training part (data, proposals, random teacher weights and the teacher
    cache are made on first use): {name: cfg}."""
    folder = os.path.join(args.output, "training")
    root = os.path.join(folder, "synthetic_shapes")
    generate_synthetic_shapes(root, {"train": 256, "val": 8, "test": 8}, image_size=128, seed=0)
    if "bench_shapes_train" not in DatasetCatalog:  # registered by an earlier part of this run
        register_synthetic_shapes(root, prefix="bench_shapes")
    dicts = DatasetCatalog.get("bench_shapes_train")
    proposals = os.path.join(folder, "proposals_train")
    if not os.path.exists(proposals):
        generate_proposal_file(
            dicts, proposals, "edge_boxes", {"max_proposals": 500}, workers=os.cpu_count()
        )
    data = [
        "MODEL.DEVICE",
        args.device,
        "DATASETS.TRAIN",
        ("bench_shapes_train",),
        "DATASETS.PROPOSAL_FILES_TRAIN",
        (proposals,),
        "SOLVER.MAX_ITER",
        args.train_iters,
        "SOLVER.AMP.ENABLED",
        args.device == "cuda",
        "MODEL.DISTILL.TEACHER_FP16",
        args.device == "cuda",
    ]
    teacher_cfg = _train_cfg("T-WDet.yaml", os.path.join(folder, "teacher_training"), data)
    teacher_weights = os.path.join(
        folder, "teacher", "model_final.pth"
    )  # random weights: speed does not depend on them
    if not os.path.exists(
        teacher_weights
    ):  # the cache below is made with (and checked against) these
        os.makedirs(os.path.dirname(teacher_weights), exist_ok=True)
        DetectionCheckpointer(
            build_model(teacher_cfg), save_dir=os.path.dirname(teacher_weights)
        ).save("model_final")
    atomic_write_bytes(os.path.join(folder, "teacher", "config.yaml"), teacher_cfg.dump().encode())
    kd = [
        *data,
        "MODEL.DISTILL.TEACHER_CONFIG",
        os.path.join(folder, "teacher", "config.yaml"),
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        teacher_weights,
    ]
    cache = os.path.join(folder, "teacher_cache")
    if not os.path.exists(cache):
        write_teacher_cache(_train_cfg("S-Cls_KD.yaml", folder, kd), cache)
    cached = [*kd, "MODEL.DISTILL.TEACHER_CACHE", cache]
    runs = {
        "plain student (S-Cls w/o KD)": _train_cfg(
            "S-Cls.yaml", os.path.join(folder, "student"), data
        ),
        "teacher (T-WDet)": teacher_cfg,
        "online KD, joint (teacher in the loop)": _train_cfg(
            "S-Cls_KD.yaml", os.path.join(folder, "student_kd"), kd
        ),
        CACHED_STAGE_1: _train_cfg(
            "S-Cls_KD_cached.yaml",
            os.path.join(folder, "student_kd_cached_stage1"),
            [*cached, "MODEL.DISTILL.LABEL_WEIGHT", 0.0, "MODEL.DISTILL.PREDICTION_WEIGHT", 0.0],
        ),
        CACHED_STAGE_2: _train_cfg(
            "S-Cls_KD_cached.yaml",
            os.path.join(folder, "student_kd_cached_stage2"),
            [*cached, "MODEL.DISTILL.FEATURE_WEIGHT", 0.0],
        ),
        "cached KD, joint (L_p + L_p' + L_f)": _train_cfg(
            "S-Cls_KD_cached.yaml", os.path.join(folder, "student_kd_cached"), cached
        ),
    }
    return runs


def benchmark_training(args):
    """Train steps at the demo's sizes (batch 16): plain student, teacher, online KD, cached KD."""
    runs = _training_runs(args)
    # Rounds of all runs: this VM's speed drifts between runs, so each ratio is taken within a
    # round and the table gives the median over rounds (and the range).
    rounds = [
        {name: _step_times(cfg) for name, cfg in runs.items()} for _ in range(args.train_rounds)
    ]

    def summary(values, digits):
        return f"{np.median(values):.{digits}f}" + (
            f" ({min(values):.{digits}f}-{max(values):.{digits}f})" if len(values) > 1 else ""
        )

    rows = []
    for name in runs:
        times = {k: [r[name][k] for r in rounds] for k in ("time", "data_time", "teacher_time")}
        teacher = summary(times["teacher_time"], 3) if any(times["teacher_time"]) else "-"
        rows.append([name, summary(times["time"], 3), summary(times["data_time"], 3), teacher])
    plain, online = "plain student (S-Cls w/o KD)", "online KD, joint (teacher in the loop)"
    ratio = [r[online]["time"] / (r[online]["teacher_time"] + r[plain]["time"]) for r in rounds]
    rows.append(
        ["online KD / (teacher forward + plain step)", summary(ratio, 2) + " (goal <= 1.1)", "", ""]
    )
    for cached in (CACHED_STAGE_1, CACHED_STAGE_2):
        ratio = [r[cached]["time"] / r[plain]["time"] for r in rounds]
        rows.append([f"{cached} / plain step", summary(ratio, 2) + " (goal <= 1.2)", "", ""])
    headers = [
        "training step (batch 16, demo sizes)",
        "s/step",
        "data s/step",
        "teacher forward s/step",
    ]
    title = (
        f"Training steps, median of {args.train_iters - 5} after 5 warm-up, configs/Synthetic; "
        f"median (range) of {args.train_rounds} rounds"
    )
    return title, headers, rows


def benchmark_train_loader(args):
    """The training data loader alone (no model): ms per batch of 16 for the plain student and
    cached KD, in-process and with 2 workers, with and without aspect-ratio grouping."""
    runs = _training_runs(args)
    rows = []
    for name in ("plain student (S-Cls w/o KD)", "cached KD, joint (L_p + L_p' + L_f)"):
        for workers, grouping in ((0, False), (2, True), (2, False)):
            cfg = runs[name].clone()
            cfg.defrost()
            cfg.DATALOADER.NUM_WORKERS, cfg.DATALOADER.ASPECT_RATIO_GROUPING = workers, grouping
            batches = iter(Trainer.build_train_loader(cfg))
            for _ in range(5):
                next(batches)
            start = time.perf_counter()
            for _ in range(60):
                next(batches)
            rows.append(
                [name, workers, grouping, f"{(time.perf_counter() - start) / 60 * 1e3:.1f}"]
            )
    headers = ["training loader", "workers", "aspect-ratio grouping", "ms/batch"]
    return "Training data loader alone, 60 batches of 16 after 5, configs/Synthetic", headers, rows


def benchmark_proposals(args):
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


PAPER_CONFIGS = {  # the paper's COCO setting: the VGG-16 teacher and student
    "teacher": "COCO/T-WDet_VGG16.yaml",
    "student": "COCO/S-Cls_VGG16.yaml",
    "stage 1": "COCO/S-Cls_VGG16_KD_stage1.yaml",
    "stage 2": "COCO/S-Cls_VGG16_KD_stage2.yaml",
    "joint": "COCO/S-Cls_VGG16_KD.yaml",
}


def _paper_batch(batch_size, device, size=672, num_proposals=500, num_classes=80):
    """``batch_size`` mapper dicts of the teacher's test size (``size`` squared, random pixels)
    with ``num_proposals`` random boxes scored in (0, 1) as EdgeBoxes' and 1-3 labels, on
    ``device``."""
    g = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(batch_size):
        xy = torch.rand(num_proposals, 2, generator=g) * (size - 32)
        wh = 16 + torch.rand(num_proposals, 2, generator=g) * (size - 16 - xy)
        proposals = Instances((size, size))
        proposals.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        proposals.objectness_logits = torch.rand(num_proposals, generator=g)
        labels = torch.zeros(num_classes)
        labels[torch.randint(num_classes, (int(torch.randint(1, 4, ())),), generator=g)] = 1
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
        batch.append(
            {
                "image": image.to(device),
                "proposals": proposals.to(device),
                "multi_labels": labels.to(device),
                "height": size,
                "width": size,
            }
        )
    return batch


def _seconds_per_call(fn, steps, device):
    """Median seconds of ``fn()`` over ``steps`` calls after 2 warm-up calls."""
    times = []
    for k in range(steps + 2):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))


def _train_step(model, amp):
    """One SGD step of ``model`` on a batch, fp32 or with fp16 autocast and loss scaling (as
    detectron2's AMPTrainer): returns ``step(batch)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
    device = model.device.type
    scaler = torch.amp.GradScaler(device, enabled=amp)

    def step(batch):
        with torch.autocast(device, dtype=torch.float16, enabled=amp):
            loss = sum(model(batch).values())
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _paper_training_steps(cfgs, teacher, batch, annotate, amp, steps):
    """Seconds per training step of the teacher, the students and the KD stages (their
    optimizers are freed on return), and per ``annotate(amp)`` (the teacher's forward)."""
    device = teacher.device.type
    students = {name: build_model(cfgs[name]) for name in ("student", "stage 1", "stage 2")}
    step = {name: _train_step(model, amp) for name, model in students.items()}
    teacher_step, joint_step = _train_step(teacher, amp), _train_step(
        build_model(cfgs["joint"]), amp
    )
    timed = {
        "teacher (T-WDet) training step": lambda: teacher_step(batch),
        "teacher forward (KD targets)": lambda: annotate(amp),
        "plain student (S-Cls w/o KD) step": lambda: step["student"](batch),
        "KD stage 1 step (L_f, cached targets)": lambda: step["stage 1"](batch),
        "KD stage 2 step (L_p + L_p', cached targets)": lambda: step["stage 2"](batch),
        "online KD step, joint (teacher forward + 3 losses)": lambda: (
            annotate(amp),
            joint_step(batch),
        ),
    }
    return {name: _seconds_per_call(fn, steps, device) for name, fn in timed.items()}


def benchmark_paper(args):
    """At the paper's sizes with its VGG-16 configs: s/step of each training step and the
    teacher's forward, and inference images/s, fp32 and (on a GPU) with AMP (fp16 autocast)."""
    device, n = args.device, args.paper_batch
    cfgs = {
        name: setup_cfg(
            os.path.join(ROOT, "configs", config),
            ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "SEED", 0],
        )
        for name, config in PAPER_CONFIGS.items()
    }
    batch = _paper_batch(n, device)
    teacher = build_model(cfgs["teacher"])
    frozen = build_model(cfgs["teacher"]).eval().requires_grad_(False)
    settings = teacher_target_settings(cfgs["joint"])

    def annotate(amp):
        with torch.no_grad(), torch.autocast(device, dtype=torch.float16, enabled=amp):
            outputs = frozen.teacher_outputs(batch)
        for x, targets in zip(batch, teacher_targets(outputs, **settings)):
            x["teacher"] = targets

    rows = []
    for amp in (False, True) if device == "cuda" else (False,):
        precision = "AMP" if amp else "fp32"
        annotate(amp)  # the cached KD steps read these targets
        seconds = _paper_training_steps(cfgs, teacher, batch, annotate, amp, args.paper_steps)
        for name, value in seconds.items():
            rows.append([name, precision, f"{value:.3f}", f"{n / value:.1f}"])
        if device == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**30
            rows.append(["peak GPU memory (all of the above)", precision, f"{peak:.1f} GiB", ""])
            torch.cuda.reset_peak_memory_stats()
        student = build_model(cfgs["student"]).eval()
        for name, model in (("student inference", student), ("teacher inference", frozen)):
            for size in sorted({1, n}):
                with torch.inference_mode(), torch.autocast(device, torch.float16, enabled=amp):
                    seconds = _seconds_per_call(
                        lambda: model(batch[:size]), args.paper_steps, device
                    )
                rows.append(
                    [f"{name}, batch {size}", precision, f"{seconds:.4f}", f"{size / seconds:.1f}"]
                )
    headers = ["at the paper's sizes (VGG-16)", "precision", "s/call", "images/s"]
    title = (
        f"The paper's VGG-16 models (configs/COCO/*VGG16*), batch {n}: teacher 672 x 672 with "
        f"500 random proposals, student 224; median of {args.paper_steps} calls after 2"
    )
    return title, headers, rows


def _jpeg_dataset(folder, count, height=480, width=640):
    """``count`` COCO-sized JPEGs (synthetic scenes, quality 90) in ``folder``, registered as a
    test set of 80 classes; returns its name."""
    name = f"benchmark_jpegs_{count}"
    if name in DatasetCatalog.list():
        return name
    os.makedirs(folder, exist_ok=True)
    dicts = []
    for i in range(count):
        file_name = os.path.join(folder, f"{i:05d}.jpg")
        if not os.path.exists(file_name):
            image = render_image(np.random.default_rng(i), width, distractors=(6, 12))[0]
            cv2.imwrite(file_name, image[:height], [cv2.IMWRITE_JPEG_QUALITY, 90])
        dicts.append(
            {
                "file_name": file_name,
                "image_id": i,
                "height": height,
                "width": width,
                "multi_labels": [i % 80],  # any label: FILTER_EMPTY_ANNOTATIONS drops none
            }
        )
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).thing_classes = [f"class{k}" for k in range(80)]
    return name


def _loader_images_per_s(cfg, dataset, model=None, skip=4):
    """Images/s of the test loader of ``dataset`` (``model`` run on each batch, if given),
    timed from batch ``skip`` to the last (the workers' start-up left out)."""
    with torch.inference_mode():
        for count, batch in enumerate(Trainer.build_test_loader(cfg, dataset)):
            if count == skip:
                start = time.perf_counter()
            if model is not None:
                model(batch)
        if cfg.MODEL.DEVICE == "cuda":
            torch.cuda.synchronize()
    return (count + 1 - skip) / (time.perf_counter() - start)


def benchmark_jpeg_to_scores(args):
    """What a deployed student costs: JPEG files (640 x 480) -> scores through the test loader
    (batch 1, as detectron2's) and the paper's VGG-16 student at 224 (random weights), with
    ``MODEL.STUDENT.TEST_RESIZE`` "model" (the loader warps each image to the teacher's 672,
    the student resizes that to 224) and "loader" (warped straight to 224); the loader alone
    too."""
    dataset = _jpeg_dataset(os.path.join(args.output, "jpegs"), args.jpeg_images)
    rows = []
    for workers in sorted({0, args.jpeg_workers}):
        for where in ("model", "loader"):
            cfg = setup_cfg(
                os.path.join(ROOT, "configs", PAPER_CONFIGS["student"]),
                [
                    *("MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device),
                    *("MODEL.STUDENT.TEST_RESIZE", where, "DATALOADER.NUM_WORKERS", workers),
                ],
            )
            model = build_model(cfg).eval()
            loader_only = _loader_images_per_s(cfg, dataset)
            end_to_end = _loader_images_per_s(cfg, dataset, model)
            rows.append([workers, where, f"{loader_only:.1f}", f"{end_to_end:.1f}"])
    headers = [
        "loader workers",
        "MODEL.STUDENT.TEST_RESIZE",
        "loader alone img/s",
        "JPEG -> scores img/s",
    ]
    title = (
        f"JPEG to scores, the paper's VGG-16 student (224), {args.jpeg_images} JPEGs of 640 x 480, "
        f"batch 1"
    )
    return title, headers, rows


def _timed(generator, image):
    start = time.perf_counter()
    generator(image)
    return time.perf_counter() - start


def _model_input(image, boxes, device):
    proposals = Instances(image.shape[:2])
    proposals.proposal_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
    proposals.objectness_logits = -torch.arange(len(boxes), dtype=torch.float32)
    tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
    return {
        "image": tensor.to(device),
        "proposals": proposals,
        "height": image.shape[0],
        "width": image.shape[1],
    }


PARTS = {
    "inference": benchmark_inference,
    "training": benchmark_training,
    "train_loader": benchmark_train_loader,
    "loading": benchmark_loading,
    "proposals": benchmark_proposals,
    "paper": benchmark_paper,
    "jpeg_to_scores": benchmark_jpeg_to_scores,
}


def main(args):
    torch.set_num_threads(args.threads or torch.get_num_threads())
    processor = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    machine = f"{processor}, {os.cpu_count()} CPUs, {threads} torch threads, device {args.device}"
    if args.device == "cuda":
        machine += f" ({torch.cuda.get_device_name()})"
    os.makedirs(args.output, exist_ok=True)
    parts = args.parts or [p for p in PARTS if p != "paper" or args.device == "cuda"]
    for part in parts:
        title, headers, rows = PARTS[part](args)
        text = f"{title}, {machine}:\n\n{tabulate(rows, headers=headers, tablefmt='github')}\n"
        print(text)
        atomic_write_bytes(os.path.join(args.output, f"{part}.md"), text.encode())
        atomic_write_bytes(
            os.path.join(args.output, f"{part}.json"),
            json.dumps(
                {"title": title, "machine": machine, "headers": headers, "rows": rows}, indent=1
            ).encode(),
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timing per measurement")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--output", default="output/benchmark")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=sorted(PARTS),
        help="default: all, and 'paper' only on a GPU (a VGG-16 at 672 takes minutes on a CPU)",
    )
    parser.add_argument(
        "--train-iters", type=int, default=50, help="training steps per model and round"
    )
    parser.add_argument(
        "--train-rounds",
        type=int,
        default=3,
        help="rounds of the training runs (ratios are taken within a round)",
    )
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
    parser.add_argument(
        "--paper-batch", type=int, default=32, help="images per batch of the paper part"
    )
    parser.add_argument("--paper-steps", type=int, default=10, help="timed calls per row")
    parser.add_argument(
        "--jpeg-images", type=int, default=200, help="JPEGs of the jpeg_to_scores part"
    )
    parser.add_argument(
        "--jpeg-workers", type=int, default=2, help="loader workers of jpeg_to_scores (and 0)"
    )
    main(parser.parse_args())
