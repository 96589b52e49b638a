#!/usr/bin/env python
"""Write a small labelled photo set, as a user would bring one, for the README's "Your own
data" commands: collages of the photographs scikit-learn and matplotlib ship (3 classes),
``<root>/images/``, ``train.csv`` (a label list), ``val.json`` and ``test.json`` (COCO,
image-level labels only).

    python datasets/prepare_sample_photos.py output/photos --train 160 --val 40 --test 40
"""

import argparse

from wsd_distill.data.datasets.sample_photos import write_sample_photo_set

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", help="folder to write")
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--val", type=int, default=40)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = write_sample_photo_set(args.root, (args.train, args.val, args.test), seed=args.seed)
    print(f"{count} images and their labels in {args.root}")
