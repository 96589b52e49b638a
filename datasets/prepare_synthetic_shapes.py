#!/usr/bin/env python
"""Generate the synthetic shapes benchmark under $DETECTRON2_DATASETS/synthetic_shapes.

    python datasets/prepare_synthetic_shapes.py --train 3000 --val 500 --test 1000 \\
        --size 128 --seed 0

The defaults are the benchmark of docs/results.md, which tools/train_net.py and
tools/distill.py --synthetic generate themselves when the folder is missing; a folder made
here with other sizes, seed, --object-size or --distractors is what they then train on.
"""

import argparse
import os

from wsd_distill.data.datasets import generate_synthetic_shapes
from wsd_distill.data.datasets.builtin import datasets_root
from wsd_distill.data.datasets.synthetic import DEMO_IMAGE_SIZE, DEMO_SIZES

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for split, n in DEMO_SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=n, help=f"{split} images")
    parser.add_argument("--size", type=int, default=DEMO_IMAGE_SIZE, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--object-size",
        type=float,
        nargs=2,
        default=(0.1, 0.45),
        help="diameter range (fraction of side)",
    )
    parser.add_argument(
        "--distractors", type=int, nargs=2, default=(2, 8), help="distractors per image (range)"
    )
    args = parser.parse_args()
    root = os.path.join(datasets_root(), "synthetic_shapes")
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    generate_synthetic_shapes(root, sizes, args.size, args.seed, args.object_size, args.distractors)
    print(f"Synthetic shapes in {root}")
