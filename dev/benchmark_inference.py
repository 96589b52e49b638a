#!/usr/bin/env python
"""Inference speed of the models as users run them: inputs made by the real test loader and
mapper (``Trainer.build_test_loader``) from generated JPEGs, random weights. Parts:

- inference: batch 1, the student vs its own ``image_logits`` on the prepared tensor vs the
  teacher (proposals given) vs the teacher with EdgeBoxes, at the paper's R-50 sizes (student
  224, teacher 672 x 896 with 500 proposals) and the demo's (configs/Synthetic).
- paper: the paper's VGG-16 student (224) and teacher (672, 500 random proposals) at batch 1 and
  --batch, fp32 and, on a GPU, AMP (the part ``make gpu-check`` runs).
- jpeg_to_scores: JPEG files (640 x 480) to the VGG-16 student's scores through the test loader,
  which resizes to the teacher's 672 (``INPUT.SQUARE_SIZE_TEST 0``, the default) or straight to
  224 (``INPUT.SQUARE_SIZE_TEST 224``); the loader alone too. What a deployed student costs.
- memory_format: configs/OwnData/Pretrained's student and teacher at batch 1, the timm
  backbones in PyTorch's default memory format and in channels last, in rounds.
- fold_bn: the same, as trained and with their frozen norms folded into their convolutions
  (what the KD teacher and tools/predict.py run), in rounds.

    python dev/benchmark_inference.py --parts inference jpeg_to_scores --output output/benchmark
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import itertools
import os
import time

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model

from wsd_distill.box_proposers import build_box_proposer
from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data.build import get_multilabel_dataset_dicts
from wsd_distill.engine import Trainer, setup_cfg
from wsd_distill.modeling.backbone import timm_backbone

from benchmark_common import (
    benchmark_parser,
    jpeg_dataset,
    loader_inputs,
    run_parts,
    seconds_per_call,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_WORKERS = ["DATALOADER.NUM_WORKERS", 0]  # unless a part sets them
SETTINGS = {  # name: (teacher config, student config, image (h, w), classes, proposals)
    "paper (R-50, 672 / 224)": ("COCO/T-WDet_R50.yaml", "COCO/S-Cls_R50.yaml", (480, 640), 80, 500),
    "demo (narrow VGG, 128 / 64)": (
        *("Synthetic/T-WDet.yaml", "Synthetic/S-Cls.yaml"),
        *((128, 128), 12, 64),
    ),
}


def model_and_cfg(path, device, opts=()):
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", path),
        ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "DATASETS.TRAIN", (), *NO_WORKERS, *opts],
    )
    return build_model(cfg).eval(), cfg


def edge_boxes_per_s(dicts, num_proposals):
    """EdgeBoxes images/s on the decoded images of ``dicts`` (one process)."""
    images = [cv2.imread(d["file_name"]) for d in dicts]
    generator = build_box_proposer("edge_boxes", max_proposals=num_proposals)
    start = time.perf_counter()
    for image in images:
        generator(image)
    return len(images) / (time.perf_counter() - start)


def per_second(fn, inputs, steps, device):
    """Calls/s of ``fn`` on the inputs in turn (median of ``steps`` calls after 2)."""
    calls = itertools.count()
    return 1 / seconds_per_call(lambda: fn(inputs[next(calls) % len(inputs)]), steps, device)


def benchmark_inference(args):
    rows, timing = [], (args.steps, args.device)
    folder = os.path.join(args.output, "inference")
    for name, (teacher_config, student_config, (h, w), classes, boxes) in SETTINGS.items():
        dataset, _ = jpeg_dataset(folder, 8, h, w, classes)
        dicts = get_multilabel_dataset_dicts([dataset])
        store = os.path.join(folder, f"{dataset}_edge_boxes")
        if not os.path.exists(store):
            generate_proposal_file(dicts, store, "edge_boxes", {"max_proposals": boxes})
        test = ["DATASETS.TEST", (dataset,), "DATASETS.PROPOSAL_FILES_TEST", (store,)]
        teacher, teacher_cfg = model_and_cfg(teacher_config, args.device, test)
        student, student_cfg = model_and_cfg(student_config, args.device, test[:2])
        student_inputs = loader_inputs(student_cfg, dataset, 8)
        with torch.inference_mode():
            prepared = [student.preprocess_image([x])[0].tensor for x in student_inputs]
            per_s = {
                "student": per_second(lambda x: student([x]), student_inputs, *timing),
                "image_logits": per_second(student.image_logits, prepared, *timing),
                "teacher": per_second(
                    lambda x: teacher([x]), loader_inputs(teacher_cfg, dataset, 8), *timing
                ),
            }
        proposals = edge_boxes_per_s(dicts, boxes)
        with_proposals = 1 / (1 / per_s["teacher"] + 1 / proposals)
        rows.append(
            [
                *(name, f"{per_s['student']:.1f}", f"{per_s['image_logits']:.1f}"),
                *(f"{per_s['teacher']:.2f}", f"{with_proposals:.2f}"),
                f"{per_s['student'] / with_proposals:.0f}x",
            ]
        )
    headers = [
        "setting",
        "student img/s",
        "its image_logits on the prepared tensor img/s",
        "teacher img/s (proposals given)",
        "teacher + EdgeBoxes img/s",
        "student / teacher+proposals",
    ]
    return f"Inference, batch 1, median of {args.steps} calls", headers, rows


def benchmark_paper(args):
    """Images/s of the paper's VGG-16 student and teacher at batch 1 and --batch."""
    folder = os.path.join(args.output, "paper")
    dataset, store = jpeg_dataset(os.path.join(folder, "jpegs"), args.batch, proposals=500)
    test = ["DATASETS.TEST", (dataset,), "DATASETS.PROPOSAL_FILES_TEST", (store,)]
    rows = []
    for name, path in (("student", "COCO/S-Cls_VGG16.yaml"), ("teacher", "COCO/T-WDet_VGG16.yaml")):
        model, cfg = model_and_cfg(path, args.device, test)
        inputs = loader_inputs(cfg, dataset, args.batch)
        for amp in (False, True) if args.device == "cuda" else (False,):
            for size in sorted({1, args.batch}):
                with torch.inference_mode(), torch.autocast(args.device, enabled=amp):
                    seconds = seconds_per_call(
                        lambda: model(inputs[:size]), args.steps, args.device
                    )
                precision = "AMP" if amp else "fp32"
                rows.append(
                    [f"{name}, batch {size}", precision, f"{seconds:.4f}", f"{size / seconds:.1f}"]
                )
    headers = ["inference at the paper's sizes (VGG-16)", "precision", "s/call", "images/s"]
    title = (
        f"Inference of configs/COCO/*VGG16* on the test loader's inputs (640 x 480 JPEGs; teacher "
        f"672 with 500 random proposals, student 224); median of {args.steps} calls after 2"
    )
    return title, headers, rows


def loader_images_per_s(cfg, dataset, model=None, skip=4):
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
    dataset, _ = jpeg_dataset(os.path.join(args.output, "jpegs"), args.jpeg_images)
    rows = []
    for workers in sorted({0, args.workers}):
        for side in (0, 224):
            opts = ["INPUT.SQUARE_SIZE_TEST", side, "DATALOADER.NUM_WORKERS", workers]
            model, cfg = model_and_cfg("COCO/S-Cls_VGG16.yaml", args.device, opts)
            loader_only = loader_images_per_s(cfg, dataset)
            end_to_end = loader_images_per_s(cfg, dataset, model)
            rows.append([workers, side, f"{loader_only:.1f}", f"{end_to_end:.1f}"])
    headers = [
        "loader workers",
        "INPUT.SQUARE_SIZE_TEST",
        "loader alone img/s",
        "JPEG -> scores img/s",
    ]
    title = (
        f"JPEG to scores, the paper's VGG-16 student (224), {args.jpeg_images} JPEGs of "
        f"640 x 480, batch 1"
    )
    return title, headers, rows


def pretrained_rounds(args, part, build):
    """Images/s at batch 1 of configs/OwnData/Pretrained's student and teacher (500 EdgeBoxes
    proposals given) as ``build(path, opts, flag)`` makes them for ``flag`` False and True,
    in ``--rounds`` rounds: rows of both medians and the speed-up's median and range."""
    folder = os.path.join(args.output, part)
    dataset, _ = jpeg_dataset(folder, 8, 480, 640, 80)
    dicts = get_multilabel_dataset_dicts([dataset])
    store = os.path.join(folder, f"{dataset}_edge_boxes")
    if not os.path.exists(store):
        generate_proposal_file(dicts, store, "edge_boxes", {"max_proposals": 500})
    test = ["DATASETS.TRAIN", (dataset,), "DATASETS.TEST", (dataset,)]  # (its class count)
    test += ["DATASETS.PROPOSAL_FILES_TEST", (store,)]
    configs = {"student": ("S-Cls.yaml", test[:4]), "teacher": ("T-WDet.yaml", test)}
    per_s = {(name, flag): [] for name in configs for flag in (False, True)}
    for _, (name, (path, opts)), flag in itertools.product(
        range(args.rounds), configs.items(), (False, True)
    ):
        model, cfg = build(f"OwnData/Pretrained/{path}", opts, flag)
        inputs = loader_inputs(cfg, dataset, 8)
        with torch.inference_mode():
            calls_per_s = per_second(lambda x: model([x]), inputs, args.steps, args.device)
            per_s[name, flag].append(calls_per_s)
    rows = []
    for name in configs:
        off, on = (np.median(per_s[name, flag]) for flag in (False, True))
        ratios = [b / a for a, b in zip(per_s[name, False], per_s[name, True])]
        rows.append(
            [name, f"{off:.2f}", f"{on:.2f}", f"{np.median(ratios):.2f}x ({min(ratios):.2f}"
             f"-{max(ratios):.2f})"]
        )  # fmt: skip
    title = (
        f"Inference of configs/OwnData/Pretrained, batch 1, 640 x 480 JPEGs through the test "
        f"loader, median of {args.steps} calls, {args.rounds} rounds"
    )
    return title, rows


def benchmark_memory_format(args):
    """The timm backbones in PyTorch's default memory format and in channels last
    (``timm_backbone.CHANNELS_LAST``)."""

    def build(path, opts, channels_last):
        timm_backbone.CHANNELS_LAST = channels_last
        return model_and_cfg(path, args.device, opts)

    title, rows = pretrained_rounds(args, "memory_format", build)
    timm_backbone.CHANNELS_LAST = True
    return title, ["model", "img/s default", "img/s channels last", "speed-up (range)"], rows


def benchmark_fold_bn(args):
    """The models as trained and with their frozen norms folded into their convolutions
    (``timm_backbone.fold_frozen_batch_norm``: the KD teacher, tools/predict.py)."""

    def build(path, opts, fold):
        model, cfg = model_and_cfg(path, args.device, opts)
        return (timm_backbone.fold_frozen_batch_norm(model) if fold else model), cfg

    title, rows = pretrained_rounds(args, "fold_bn", build)
    return title, ["model", "img/s as trained", "img/s norms folded", "speed-up (range)"], rows


PARTS = {
    "inference": benchmark_inference,
    "memory_format": benchmark_memory_format,
    "fold_bn": benchmark_fold_bn,
    "paper": benchmark_paper,
    "jpeg_to_scores": benchmark_jpeg_to_scores,
}


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, PARTS, ["inference"])
    parser.add_argument("--steps", type=int, default=10, help="timed calls per row")
    parser.add_argument("--batch", type=int, default=32, help="the larger batch of 'paper'")
    parser.add_argument("--jpeg-images", type=int, default=200, help="JPEGs of jpeg_to_scores")
    parser.add_argument("--workers", type=int, default=2, help="loader workers (and 0)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of memory_format, fold_bn")
    run_parts(parser.parse_args(), PARTS)
