#!/usr/bin/env python
"""Training speed: wsd-distill's ``Trainer`` (detectron2's ``SimpleTrainer``/``AMPTrainer`` steps,
the real data loader and mapper, the ``TeacherHook`` for online KD) on generated data, timed by
detectron2's own ``time`` / ``data_time`` metrics (and the hook's ``teacher_time``). Parts:

- training: the synthetic configs (batch 16): plain student, teacher, online KD (joint) and KD
  from the teacher cache (stage 1, stage 2, joint), 256 generated images with 500 EdgeBoxes
  proposals, random teacher weights; in rounds, each ratio taken within a round.
- train_loader: the training data loader alone (no model), in-process and with 2 workers, with
  and without aspect-ratio grouping.
- cache_mapping: the teacher cache writer's reading and mapping of images (``map_variants``:
  each 640 x 480 JPEG read once, then mapped with its 500 proposals through every (size, flip)
  variant of configs/COCO/S-Cls_VGG16_KD.yaml), in one process: what one loader worker feeds
  the cache's teacher.
- own_data: configs/OwnData (narrow VGG from scratch) against configs/OwnData/Pretrained
  (ImageNet EfficientNet-Lite0), each at its own sizes and batch, on 640 x 480 JPEGs with 500
  random proposals: teacher, plain student, online joint KD.
- paper: the paper's VGG-16 configs (configs/COCO/*VGG16*) at --batch (the authors' 32) on
  640 x 480 JPEGs with 500 random proposals each (the teacher at 672, the student at 224):
  teacher, plain student, online KD stage 1, stage 2 and joint; fp32 and, on a GPU, AMP (the
  part ``make gpu-check`` runs).
- teacher_heads: one WSDDN training step (forward, loss, backward; no loader) of
  configs/OwnData/Pretrained/T-WDet.yaml with each box head (``AveragePoolBoxHead``,
  ``TimmC4BoxHead`` at RoIAlign 14 and 7 on stage3) and with the box average on
  EfficientNet-Lite2, 150 classes, on 2 random 512 x 512 images with 64 and 500 random boxes.
- memory_format: the pretrained own-data configs (teacher, plain student, online joint KD) with
  the timm backbones in channels-last memory format (``timm_backbone.CHANNELS_LAST``) and in
  PyTorch's default, in rounds; each backbone's FLOP rate against a matmul of the same run.
- fold_bn: the pretrained own-data online joint KD step, its teacher's frozen norms folded into
  its convolutions (``timm_backbone.fold_frozen_batch_norm``, what ``build_teacher`` does) and
  not, in rounds.
- compile: the plain student's backbone and classifier, a forward and backward step, eager
  and under ``torch.compile`` (inductor), in rounds, with the compile's time.
- busy_machine: one Lite0 training step (``dev/openmp_step.py``) under each OpenMP setting
  (``OPENMP_SETTINGS``, in the environment before torch loads), alone and beside a second
  training (the same step in a loop, with the same setting or with torch's default); in rounds.

    python dev/benchmark_training.py --parts training train_loader --output output/benchmark
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import contextlib
import itertools
import os
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import timm
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from fvcore.nn import FlopCountAnalysis
from torch.nn import functional as F

from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data import get_multilabel_dataset_dicts
from wsd_distill.data.datasets import generate_synthetic_shapes, register_synthetic_shapes
from wsd_distill.engine import Trainer, setup_cfg
from wsd_distill.engine.teacher_cache_writer import (
    map_variants,
    variant_mappers,
    write_teacher_cache,
)
from wsd_distill.modeling import teacher as teacher_module
from wsd_distill.modeling.backbone import timm_backbone
from wsd_distill.pipeline.schedule import median_step_times, random_teacher

from benchmark_common import benchmark_parser, jpeg_dataset, run_parts, seconds_per_call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAIN, ONLINE = "plain student (S-Cls w/o KD)", "online KD, joint (teacher in the loop)"
CACHED_STAGE_1 = "cached KD, stage 1 (L_f)"
CACHED_STAGE_2 = "cached KD, stage 2 (L_p + L_p')"
CACHED_JOINT = "cached KD, joint (L_p + L_p' + L_f)"
NEVER = ["SOLVER.CHECKPOINT_PERIOD", 10**6, "DATASETS.TEST", (), "SEED", 0]


def config(path, output_dir, opts):
    return setup_cfg(os.path.join(ROOT, "configs", path), [*NEVER, "OUTPUT_DIR", output_dir, *opts])


def synthetic_runs(args):
    """The configs of the training part (data, proposals, random teacher weights and the teacher
    cache are made on first use): {name: cfg}."""
    folder = os.path.join(args.output, "training")
    root = os.path.join(folder, "synthetic_shapes")
    generate_synthetic_shapes(root, {"train": 256, "val": 8, "test": 8}, image_size=128, seed=0)
    if "bench_shapes_train" not in DatasetCatalog:
        register_synthetic_shapes(root, prefix="bench_shapes")
    proposals = os.path.join(folder, "proposals_train")
    if not os.path.exists(proposals):
        dicts = DatasetCatalog.get("bench_shapes_train")
        generate_proposal_file(dicts, proposals, "edge_boxes", {"max_proposals": 500})
    cuda = args.device == "cuda"
    data = [
        *("MODEL.DEVICE", args.device, "DATASETS.TRAIN", ("bench_shapes_train",)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (proposals,), "SOLVER.MAX_ITER", args.iters),
        *("SOLVER.AMP.ENABLED", cuda, "MODEL.DISTILL.TEACHER_FP16", cuda),
    ]
    teacher_cfg = config("Synthetic/T-WDet.yaml", os.path.join(folder, "teacher_training"), data)
    teacher = random_teacher(teacher_cfg, os.path.join(folder, "teacher"))
    kd = [*data, "MODEL.DISTILL.TEACHER_CONFIG", teacher, "MODEL.DISTILL.TEACHER_WEIGHTS", ""]
    cache = os.path.join(folder, "teacher_cache")
    if not os.path.exists(cache):
        write_teacher_cache(config("Synthetic/S-Cls_KD.yaml", folder, kd), cache)
    cached = [*kd, "MODEL.DISTILL.TEACHER_CACHE", cache]
    no_labels = ["MODEL.DISTILL.LABEL_WEIGHT", 0.0, "MODEL.DISTILL.PREDICTION_WEIGHT", 0.0]
    return {
        PLAIN: config("Synthetic/S-Cls.yaml", os.path.join(folder, "student"), data),
        "teacher (T-WDet)": teacher_cfg,
        ONLINE: config("Synthetic/S-Cls_KD.yaml", os.path.join(folder, "student_kd"), kd),
        CACHED_STAGE_1: config(
            "Synthetic/S-Cls_KD_cached.yaml", os.path.join(folder, "cached1"), [*cached, *no_labels]
        ),
        CACHED_STAGE_2: config(
            "Synthetic/S-Cls_KD_cached.yaml",
            os.path.join(folder, "cached2"),
            [*cached, "MODEL.DISTILL.FEATURE_WEIGHT", 0.0],
        ),
        CACHED_JOINT: config(
            "Synthetic/S-Cls_KD_cached.yaml", os.path.join(folder, "cached"), cached
        ),
    }


def summary(values, digits):
    """The median of ``values``, and their range when there are several."""
    text = f"{np.median(values):.{digits}f}"
    return text + (
        f" ({min(values):.{digits}f}-{max(values):.{digits}f})" if len(values) > 1 else ""
    )


def benchmark_training(args):
    runs = synthetic_runs(args)
    # Rounds of all runs: this VM's speed drifts between runs, so each ratio is taken within a
    # round and the table gives the median over rounds (and the range).
    rounds = [
        {name: median_step_times(cfg) for name, cfg in runs.items()} for _ in range(args.rounds)
    ]
    rows = []
    for name in runs:
        times = {k: [r[name][k] for r in rounds] for k in ("time", "data_time", "teacher_time")}
        teacher = summary(times["teacher_time"], 3) if any(times["teacher_time"]) else "-"
        rows.append([name, summary(times["time"], 3), summary(times["data_time"], 3), teacher])
    ratio = [r[ONLINE]["time"] / (r[ONLINE]["teacher_time"] + r[PLAIN]["time"]) for r in rounds]
    rows.append(["online KD / (teacher forward + plain step)", summary(ratio, 2), "", ""])
    for cached in (CACHED_STAGE_1, CACHED_STAGE_2):
        ratio = [r[cached]["time"] / r[PLAIN]["time"] for r in rounds]
        rows.append([f"{cached} / plain step", summary(ratio, 2), "", ""])
    headers = ["training step (batch 16, demo sizes)", "s/step", "data s/step", "teacher s/step"]
    title = (
        f"Training steps (Trainer), median of {args.iters - 5} after 5 warm-up, "
        f"configs/Synthetic; median (range) of {args.rounds} rounds"
    )
    return title, headers, rows


def benchmark_train_loader(args):
    """The training data loader alone (no model): ms per batch of 16 for the plain student and
    cached KD, in-process and with 2 workers, with and without aspect-ratio grouping."""
    runs = synthetic_runs(args)
    rows = []
    for name in (PLAIN, CACHED_JOINT):
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
            milliseconds = (time.perf_counter() - start) / 60 * 1e3
            rows.append([name, workers, grouping, f"{milliseconds:.1f}"])
    headers = ["training loader", "workers", "aspect-ratio grouping", "ms/batch"]
    return "Training data loader alone, 60 batches of 16 after 5, configs/Synthetic", headers, rows


def paper_runs(args, amp):
    """The paper's VGG-16 configs on generated COCO-sized JPEGs: {name: cfg}."""
    folder = os.path.join(args.output, "paper")
    dataset, store = jpeg_dataset(os.path.join(folder, "jpegs"), 4 * args.batch, proposals=500)
    data = [
        *("MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", "DATASETS.TRAIN", (dataset,)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (store,), "SOLVER.IMS_PER_BATCH", args.batch),
        *("SOLVER.MAX_ITER", args.warmup + args.steps, "SOLVER.AMP.ENABLED", amp),
        *("MODEL.DISTILL.TEACHER_FP16", amp, "DATALOADER.NUM_WORKERS", args.workers),
    ]
    teacher_cfg = config("COCO/T-WDet_VGG16.yaml", os.path.join(folder, "teacher_run"), data)
    teacher = random_teacher(teacher_cfg, os.path.join(folder, "teacher"))
    kd = [*data, "MODEL.DISTILL.TEACHER_CONFIG", teacher, "MODEL.DISTILL.TEACHER_WEIGHTS", ""]
    return {
        "teacher (T-WDet)": teacher_cfg,
        "plain student (S-Cls w/o KD)": config("COCO/S-Cls_VGG16.yaml", folder, data),
        "KD stage 1 (L_f), online": config("COCO/S-Cls_VGG16_KD_stage1.yaml", folder, kd),
        "KD stage 2 (L_p + L_p'), online": config("COCO/S-Cls_VGG16_KD_stage2.yaml", folder, kd),
        "KD joint (L_p + L_p' + L_f), online": config("COCO/S-Cls_VGG16_KD.yaml", folder, kd),
    }


def benchmark_paper(args):
    """s/step of the paper's models and KD stages, with the teacher's forward (online KD) and
    the wait for data, fp32 and (on a GPU) AMP."""
    rows = []
    for amp in (False, True) if args.device == "cuda" else (False,):
        for name, cfg in paper_runs(args, amp).items():
            t = median_step_times(cfg, warmup=args.warmup)
            without_teacher = t["time"] - t["teacher_time"]
            rows.append(
                [
                    *(name, "AMP" if amp else "fp32", f"{t['time']:.3f}"),
                    *(f"{t['data_time']:.3f}", f"{t['teacher_time']:.3f}"),
                    f"{without_teacher:.3f}",
                    f"{args.batch / t['time']:.1f}",
                    f"{t['peak_gib']:.1f}" if "peak_gib" in t else "",
                ]
            )
    headers = [
        "step at the paper's sizes (VGG-16)",
        "precision",
        "s/step",
        "data s/step",
        "teacher s/step",
        "s/step without the teacher",
        "images/s",
        "peak GPU GiB",
    ]
    title = (
        f"Training steps (Trainer) of configs/COCO/*VGG16*, batch {args.batch}, 640 x 480 JPEGs "
        f"(teacher 672, student 224, 500 random proposals, {args.workers} loader workers); "
        f"median of {args.steps} steps after {args.warmup}"
    )
    return title, headers, rows


def benchmark_own_data(args):
    """s/step and images/s of the own-data configs, from scratch and pretrained."""
    folder = os.path.join(args.output, "own_data")
    dataset, store = jpeg_dataset(os.path.join(folder, "jpegs"), 64, proposals=500)
    data = [
        *("MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", "DATASETS.TRAIN", (dataset,)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (store,), "SOLVER.MAX_ITER", args.warmup + args.steps),
    ]
    rows = []
    for config_dir in ("OwnData", "OwnData/Pretrained"):
        run = os.path.join(folder, config_dir.replace("/", "_"))
        teacher_cfg = config(f"{config_dir}/T-WDet.yaml", run + "_teacher_run", data)
        teacher = random_teacher(teacher_cfg, run + "_teacher")
        kd = [*data, "MODEL.DISTILL.TEACHER_CONFIG", teacher, "MODEL.DISTILL.TEACHER_WEIGHTS", ""]
        runs = {
            "teacher (T-WDet)": teacher_cfg,
            "plain student (S-Cls w/o KD)": config(f"{config_dir}/S-Cls.yaml", run, data),
            "KD joint, online": config(f"{config_dir}/S-Cls_KD.yaml", run, kd),
        }
        for name, cfg in runs.items():
            t = median_step_times(cfg, warmup=args.warmup)
            batch = cfg.SOLVER.IMS_PER_BATCH
            rows.append(
                [
                    *(f"configs/{config_dir}", name, batch, f"{t['time']:.2f}"),
                    *(f"{t['data_time']:.3f}", f"{t['teacher_time']:.2f}"),
                    f"{batch / t['time']:.1f}",
                ]
            )
    headers = ["configs", "run", "batch", "s/step", "data s/step", "teacher s/step", "images/s"]
    title = (
        f"Training steps (Trainer) of the own-data configs on 640 x 480 JPEGs with 500 random "
        f"proposals, each at its sizes and batch; median of {args.steps} steps after {args.warmup}"
    )
    return title, headers, rows


def pretrained_runs(args, part):
    """The configs of configs/OwnData/Pretrained's teacher, plain student and online joint KD
    student (a random teacher) on 64 generated 640 x 480 JPEGs with 500 random proposals,
    ``--warmup`` + ``--steps`` iterations, under ``<output>/<part>``: {run name: cfg}."""
    folder = os.path.join(args.output, part)
    dataset, store = jpeg_dataset(os.path.join(folder, "jpegs"), 64, proposals=500)
    data = [
        *("MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", "DATASETS.TRAIN", (dataset,)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (store,), "SOLVER.MAX_ITER", args.warmup + args.steps),
    ]
    run = os.path.join(folder, "run")
    teacher_cfg = config("OwnData/Pretrained/T-WDet.yaml", run + "_teacher_run", data)
    teacher = random_teacher(teacher_cfg, run + "_teacher")
    kd = [*data, "MODEL.DISTILL.TEACHER_CONFIG", teacher, "MODEL.DISTILL.TEACHER_WEIGHTS", ""]
    return {
        "teacher (T-WDet)": teacher_cfg,
        "plain student (S-Cls w/o KD)": config("OwnData/Pretrained/S-Cls.yaml", run, data),
        "KD joint, online": config("OwnData/Pretrained/S-Cls_KD.yaml", run, kd),
    }


def benchmark_memory_format(args):
    """s/step of the pretrained own-data configs with the timm backbones in channels-last
    memory format and in PyTorch's default, in rounds; the FLOP rate of each backbone's
    forward and backward (fvcore's count, x3) against a 2048^2 matmul of the same round."""
    runs = pretrained_runs(args, "memory_format")
    teacher_cfg = runs["teacher (T-WDet)"]
    matrix = torch.randn(2048, 2048)
    rows = []
    for name, cfg in runs.items():
        times = {False: [], True: []}
        for _ in range(args.rounds):
            for channels_last in (False, True):
                timm_backbone.CHANNELS_LAST = channels_last
                times[channels_last].append(median_step_times(cfg, warmup=args.warmup)["time"])
        ratios = [a / b for a, b in zip(times[True], times[False])]
        # the teacher's 640 x 480 photos at 384 (its sizes' middle), the students' square input
        shape = (384, 512) if cfg is teacher_cfg else (cfg.MODEL.STUDENT.INPUT_SIZE,) * 2
        backbone = build_model(cfg).backbone.train()
        x = torch.randn(cfg.SOLVER.IMS_PER_BATCH, 3, *shape)
        count = FlopCountAnalysis(backbone, (x,)).unsupported_ops_warnings(False)
        flops = 2 * 3 * count.total()  # (fvcore counts a multiply-add once; backward ~2x)

        def backbone_step():
            sum(v.mean() for v in backbone(x).values()).backward()

        seconds = seconds_per_call(backbone_step, 3, args.device)
        matmul = 2 * 2048**3 / seconds_per_call(lambda: matrix @ matrix, 5, args.device)
        rows.append(
            [
                *(name, f"{np.median(times[False]):.2f}", f"{np.median(times[True]):.2f}"),
                f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                *(f"{seconds:.2f}", f"{flops / seconds / 1e9:.1f}", f"{matmul / 1e9:.0f}"),
            ]
        )
    timm_backbone.CHANNELS_LAST = True
    headers = [
        "run",
        "s/step default",
        "s/step channels last",
        "ratio (range)",
        "backbone fwd+bwd s (channels last)",
        "its GFLOP/s",
        "matmul GFLOP/s",
    ]
    title = (
        f"Training steps (Trainer) of configs/OwnData/Pretrained on 640 x 480 JPEGs with 500 "
        f"random proposals, the timm backbones in PyTorch's default memory format and in "
        f"channels last; median of {args.steps} steps after {args.warmup}, {args.rounds} rounds"
    )
    return title, headers, rows


def benchmark_fold_bn(args):
    """s/step of the pretrained own-data online joint KD student, its teacher's frozen norms
    folded (``build_teacher``) and not (the teacher as trained), in rounds."""
    cfg = pretrained_runs(args, "fold_bn")["KD joint, online"]
    times = {False: [], True: []}
    for _, fold in itertools.product(range(args.rounds), (False, True)):
        as_trained = mock.patch.object(teacher_module, "fold_frozen_batch_norm", lambda m: m)
        with contextlib.nullcontext() if fold else as_trained:
            times[fold].append(median_step_times(cfg, warmup=args.warmup)["time"])
    ratios = [a / b for a, b in zip(times[True], times[False])]
    rows = [
        [
            "KD joint, online",
            *(f"{np.median(times[False]):.2f}", f"{np.median(times[True]):.2f}"),
            f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
        ]
    ]
    headers = ["run", "s/step teacher as trained", "s/step teacher folded", "ratio (range)"]
    title = (
        f"Training steps (Trainer) of configs/OwnData/Pretrained/S-Cls_KD.yaml on 640 x 480 "
        f"JPEGs with 500 random proposals, the online teacher's frozen norms folded into its "
        f"convolutions and not; median of {args.steps} steps after {args.warmup}, "
        f"{args.rounds} rounds"
    )
    return title, headers, rows


def benchmark_compile(args):
    """s/step of the plain student's backbone and classifier (timm's Lite0, batch 16 at 224,
    channels last, BCE, backward) eager and under ``torch.compile``, in rounds; the compile's
    own time and the first loss of each."""
    torch.manual_seed(0)
    eager = timm.create_model("tf_efficientnet_lite0", num_classes=80)
    eager = eager.to(memory_format=torch.channels_last)
    twin = timm.create_model("tf_efficientnet_lite0", num_classes=80)
    twin.load_state_dict(eager.state_dict())
    twin = twin.to(memory_format=torch.channels_last)
    images = torch.randn(16, 3, 224, 224).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (16, 80)).float()

    def step(model):
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
        loss.backward()
        return loss.item()

    start = time.perf_counter()
    compiled = torch.compile(twin)
    losses = [step(eager), step(compiled)]
    compile_seconds = time.perf_counter() - start
    times = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, model in (("eager", eager), ("compiled", compiled)):
            times[name].append(seconds_per_call(lambda: step(model), args.steps, "cpu", 1))
    ratios = [c / e for c, e in zip(times["compiled"], times["eager"])]
    rows = [
        [
            f"{np.median(times['eager']):.2f}",
            f"{np.median(times['compiled']):.2f}",
            f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            f"{compile_seconds:.0f}",
            f"{losses[0]:.6f} / {losses[1]:.6f}",
        ]
    ]
    headers = ["s/step eager", "s/step compiled", "ratio (range)", "compile s", "first loss"]
    title = (
        f"Lite0 forward + BCE + backward, batch 16 at 224 (channels last), eager and "
        f"torch.compile; median of {args.steps} steps after 1, {args.rounds} rounds"
    )
    return title, headers, rows


def benchmark_cache_mapping(args):
    """Images/s and ms per cache entry of the cache writer's ``map_variants`` in one process."""
    cfg = paper_runs(args, False)["KD joint (L_p + L_p' + L_f), online"]
    dicts = get_multilabel_dataset_dicts(
        cfg.DATASETS.TRAIN, proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN
    )
    mappers = list(variant_mappers(cfg).values())
    map_variants(dicts, mappers, range(2))  # warm-up: the proposal store opened
    start = time.perf_counter()
    for s in range(0, len(dicts), 16):
        map_variants(dicts, mappers, range(s, min(s + 16, len(dicts))))
    seconds = time.perf_counter() - start
    ms_per_entry = seconds / len(dicts) / len(mappers) * 1e3
    rows = [[len(mappers), len(dicts), f"{len(dicts) / seconds:.1f}", f"{ms_per_entry:.2f}"]]
    title = (
        "Teacher cache writer, reading and mapping (map_variants) in one process: 640 x 480 "
        "JPEGs with 500 proposals, configs/COCO/S-Cls_VGG16_KD.yaml's (size, flip) variants"
    )
    return title, ["variants", "images", "images/s", "ms per entry"], rows


TIMM_C4 = [
    *("MODEL.TIMM.OUT_FEATURES", ["stage3"], "MODEL.ROI_HEADS.IN_FEATURES", ["stage3"]),
    *("MODEL.ROI_BOX_HEAD.NAME", "TimmC4BoxHead", "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2"),
]
TEACHER_HEADS = {
    "pool (box average of the stride-32 map)": [],
    "timm_c4, RoIAlign 14 x 14 on stage3": [*TIMM_C4, "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 14],
    "timm_c4, RoIAlign 7 x 7 on stage3": [*TIMM_C4, "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7],
    "pool, on EfficientNet-Lite2": ["MODEL.TIMM.NAME", "tf_efficientnet_lite2"],
}


def random_batch(rois, side=512, images=2, num_classes=150):
    """``images`` random images of ``side`` pixels, each with ``rois`` random boxes and two
    labels, as the mapper gives them."""
    xy = torch.rand(rois, 2) * (side - 112)
    boxes = torch.cat([xy, (xy + 16 + torch.rand(rois, 2) * 200).clamp(max=side)], dim=1)
    proposals = Instances((side, side), proposal_boxes=Boxes(boxes))
    proposals.objectness_logits = torch.rand(rois)
    labels = torch.zeros(num_classes)
    labels[[1, 2]] = 1
    image = torch.rand(3, side, side) * 255
    return [{"image": image, "proposals": proposals, "multi_labels": labels}] * images


def benchmark_teacher_heads(args):
    """s/image of a WSDDN training step with each box head, at 64 and 500 RoIs."""
    rows, batches = [], {rois: random_batch(rois) for rois in (64, 500)}
    for name, opts in TEACHER_HEADS.items():
        torch.manual_seed(0)
        cfg = config(
            "OwnData/Pretrained/T-WDet.yaml",
            args.output,
            [*("MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES", 150, *opts)],
        )
        model = build_model(cfg).train()
        row = [name]
        for rois, batch in batches.items():
            model.max_proposals = rois

            def step():
                sum(model(batch).values()).backward()

            row.append(f"{seconds_per_call(step, args.steps, args.device, 1) / len(batch):.2f}")
        rows.append(row)
    title = (
        "One WSDDN training step (no loader) of configs/OwnData/Pretrained/T-WDet.yaml, 2 random "
        f"512 x 512 images, 150 classes; s/image, median of {args.steps} steps after 1"
    )
    return title, ["box head", "64 RoIs", "500 RoIs"], rows


# OpenMP settings of ``busy_machine``: {name: environment}. libgomp (torch's CPU threads on Linux)
# spins 300,000 times at a barrier before it sleeps unless told otherwise.
OPENMP_SETTINGS = {
    "torch's default": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def openmp_env(setting):
    """This process's environment with the OpenMP variables of ``setting`` alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.pop("OMP_NUM_THREADS", None)
    return {**env, **OPENMP_SETTINGS[setting]}


def step_seconds(setting, steps, beside=None):
    """Median s/step of ``dev/openmp_step.py`` under ``setting``, alone or while a second one
    trains under the setting ``beside``."""
    script = os.path.join(ROOT, "dev", "openmp_step.py")
    second = None
    if beside is not None:
        second = subprocess.Popen([sys.executable, script, "0"], env=openmp_env(beside))
        time.sleep(10)  # (its model built, training)
    try:
        out = subprocess.run(
            [sys.executable, script, str(steps)],
            env=openmp_env(setting),
            check=True,
            capture_output=True,
            text=True,
        )
        return float(out.stdout.split()[-1])
    finally:
        if second is not None:
            second.kill()
            second.wait()


def benchmark_busy_machine(args):
    """s/step of one Lite0 step under each OpenMP setting, alone and beside a second training;
    each ratio against torch's default alone in the same round."""
    default = "torch's default"
    conditions = {"alone": None, "beside the same": "same", "beside torch's default": default}
    rounds = []
    for _ in range(args.rounds):
        rounds.append(
            {
                (setting, condition): step_seconds(
                    setting, args.steps, setting if beside == "same" else beside
                )
                for setting in OPENMP_SETTINGS
                for condition, beside in conditions.items()
            }
        )
    rows = []
    for setting in OPENMP_SETTINGS:
        row = [setting]
        for condition in conditions:
            seconds = [r[setting, condition] for r in rounds]
            ratio = [r[setting, condition] / r[default, "alone"] for r in rounds]
            row += [summary(seconds, 2), summary(ratio, 2)]
        rows.append(row)
    headers = ["OpenMP setting"]
    for condition in conditions:
        headers += [f"s/step {condition}", "x default alone"]
    title = (
        "One Lite0 training step (batch 4 at 320, dev/openmp_step.py) in a process of its own, "
        f"median of {args.steps} steps after 1, alone and beside a second training of the same "
        f"step; median (range) of {args.rounds} rounds"
    )
    return title, headers, rows


PARTS = {
    "training": benchmark_training,
    "train_loader": benchmark_train_loader,
    "cache_mapping": benchmark_cache_mapping,
    "own_data": benchmark_own_data,
    "paper": benchmark_paper,
    "busy_machine": benchmark_busy_machine,
    "teacher_heads": benchmark_teacher_heads,
    "memory_format": benchmark_memory_format,
    "fold_bn": benchmark_fold_bn,
    "compile": benchmark_compile,
}


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, PARTS, ["training"])
    parser.add_argument("--iters", type=int, default=50, help="steps per synthetic run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the synthetic runs")
    parser.add_argument("--batch", type=int, default=32, help="images per batch of 'paper'")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run of 'paper'")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps per run of 'paper' (>= 3)"
    )
    parser.add_argument("--workers", type=int, default=8, help="loader workers of 'paper'")
    run_parts(parser.parse_args(), PARTS)
