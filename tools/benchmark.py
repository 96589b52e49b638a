#!/usr/bin/env python
"""Inference speed of the student alone vs the teacher (proposals given) vs the teacher with
proposal generation, at the paper's sizes (student 224, teacher 672 with 500 EdgeBoxes
proposals, ResNet-50) and at the demo's (configs/Synthetic). Weights are random: speed does not
depend on them. Prints a table and writes it as JSON and Markdown to --output.

    python tools/benchmark.py --device cpu --output output/benchmark
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from tabulate import tabulate

from wsd_distill import add_wsd_distill_config
from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.data.proposals import atomic_write_bytes
from wsd_distill.proposals import build_proposal_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {  # name: (teacher config, student config, teacher image (h, w), proposals)
    "paper (R-50, 672 / 224)": ("COCO/T-WDet_R50.yaml", "COCO/S-Cls_R50.yaml", (672, 896), 500),
    "demo (narrow VGG, 128 / 64)": ("Synthetic/T-WDet.yaml", "Synthetic/S-Cls.yaml", (128, 128), 64),
}


def load(config, device):
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(os.path.join(ROOT, "configs", config))
    cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = "", device
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


def main(args):
    torch.set_num_threads(args.threads or torch.get_num_threads())
    rng = np.random.default_rng(0)
    rows = []
    for name, (teacher_config, student_config, (h, w), num_proposals) in SETTINGS.items():
        teacher, _ = load(teacher_config, args.device)
        student, student_cfg = load(student_config, args.device)
        images = [render_image(rng, max(h, w), distractors=(6, 12))[0][:h, :w] for _ in range(4)]
        generator = build_proposal_generator("edge_boxes", max_proposals=num_proposals)
        proposals_per_s = 1.0 / np.mean([_timed(generator, im) for im in images])
        inputs = [_model_input(im, generator(im)[0], args.device) for im in images]
        small = student_cfg.MODEL.STUDENT.INPUT_SIZE
        student_inputs = [{"image": torch.as_tensor(im[:small, :small].transpose(2, 0, 1).copy()).to(args.device)} for im in images]
        student_speed = images_per_s(lambda x: student([x]), student_inputs, args.seconds, args.device)
        teacher_speed = images_per_s(lambda x: teacher([x]), inputs, args.seconds, args.device)
        with_proposals = 1.0 / (1.0 / teacher_speed + 1.0 / proposals_per_s)
        rows.append([name, f"{student_speed:.1f}", f"{teacher_speed:.2f}", f"{with_proposals:.2f}",
                     f"{student_speed / with_proposals:.0f}x"])  # fmt: skip
    headers = ["setting", "student img/s", "teacher img/s (proposals given)", "teacher + EdgeBoxes img/s", "student / teacher+proposals"]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {args.device}"
    if args.device == "cuda":
        machine += f" ({torch.cuda.get_device_name()})"
    table = tabulate(rows, headers=headers, tablefmt="github")
    print(f"Inference, batch 1, {machine}:\n\n{table}")
    os.makedirs(args.output, exist_ok=True)
    atomic_write_bytes(os.path.join(args.output, "inference.md"), f"Inference, batch 1, {machine}:\n\n{table}\n".encode())
    atomic_write_bytes(os.path.join(args.output, "inference.json"),
                       json.dumps({"machine": machine, "headers": headers, "rows": rows}, indent=1).encode())  # fmt: skip


def _timed(generator, image):
    start = time.perf_counter()
    generator(image)
    return time.perf_counter() - start


def _model_input(image, boxes, device):
    proposals = Instances(image.shape[:2])
    proposals.proposal_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
    proposals.objectness_logits = -torch.arange(len(boxes), dtype=torch.float32)
    tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
    return {"image": tensor.to(device), "proposals": proposals, "height": image.shape[0], "width": image.shape[1]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timing per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--output", default="output/benchmark")
    main(parser.parse_args())
