#!/usr/bin/env python
"""Generate the synthetic shapes benchmark under $DETECTRON2_DATASETS/synthetic_shapes.

    python datasets/prepare_synthetic_shapes.py --train 2000 --val 400 --test 1000 \\
        --size 256 --seed 0

The sizes must match the config's DATASETS.SYNTHETIC.NUM_TRAIN/NUM_VAL/NUM_TEST/IMAGE_SIZE
when training on it; the seed, --object-size and --distractors are this script's
(tools/train_net.py and tools/distill.py --synthetic generate it themselves from the config,
with the defaults, when it is missing).
"""

import argparse
import os

from wsd_distill.data.datasets import generate_synthetic_shapes
from wsd_distill.data.datasets.builtin import datasets_root

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
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
