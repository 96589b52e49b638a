#!/usr/bin/env python
"""Convert torchvision's ImageNet VGG-16 into the weights of the paper's teacher or student
(configs/*/T-WDet_VGG16.yaml, S-Cls_VGG16*.yaml): conv1_1 ... conv5_3 into the VGG backbone,
fc6 and fc7 into the teacher's box head or the student's fc head. Their class layers (the
teacher's two streams, the student's classifier) start untrained, as in the paper.

    wget https://download.pytorch.org/models/vgg16-397923af.pth     # once, with internet
    python tools/convert_torchvision_vgg.py vgg16-397923af.pth --model teacher \\
        --output output/weights/vgg16_wsddn.pth
    python tools/convert_torchvision_vgg.py vgg16-397923af.pth --model student \\
        --output output/weights/vgg16_student.pth

torchvision's VGG-16 reads RGB images normalized by the ImageNet mean and std: the VGG-16
configs set INPUT.FORMAT "RGB" and MODEL.PIXEL_MEAN/STD to match.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import io
import os

import torch

from wsd_distill.engine import run_tool
from wsd_distill.utils import atomic_write_bytes

# torchvision's features.<i> convolutions, stage by stage (a max-pool precedes each but the first)
VGG16_CONVS = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
HEADS = {"teacher": "box_head", "student": "head.layers"}  # fc6, fc7 at indices 1 and 4


def convert_vgg16(torchvision_state, model):
    """torchvision ``vgg16().state_dict()`` -> the state dict of wsd-distill's ``model``
    ("teacher": a WSDDN with the fc box head; "student": a StudentClassifier with the fc head)."""
    converted = {}
    for stage, indices in enumerate(VGG16_CONVS):
        for position, index in enumerate(indices):
            for kind in ("weight", "bias"):
                name = f"backbone.conv{stage + 1}.{2 * position}.{kind}"
                converted[name] = torchvision_state[f"features.{index}.{kind}"]
    for ours, theirs in ((1, 0), (4, 3)):  # fc6, fc7
        for kind in ("weight", "bias"):
            theirs_name = f"classifier.{theirs}.{kind}"
            converted[f"{HEADS[model]}.{ours}.{kind}"] = torchvision_state[theirs_name]
    return converted


def main(args):
    state = torch.load(args.torchvision_weights, map_location="cpu", weights_only=True)
    converted = convert_vgg16(state, args.model)
    buffer = io.BytesIO()
    torch.save({"model": converted, "__author__": "torchvision VGG-16 (ImageNet)"}, buffer)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    atomic_write_bytes(args.output, buffer.getvalue())
    print(f"Wrote {args.output}: {len(converted)} tensors for the {args.model}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("torchvision_weights", help="torchvision's vgg16 state dict (.pth)")
    parser.add_argument("--model", choices=sorted(HEADS), required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    run_tool(main, args, resume="")
