#!/usr/bin/env python
"""Declare the 256 real COCO-2017 photos of lightly-ai/coco128_yolo (YOLO labels, 80 classes)
as a train / val / test benchmark: ``<output>/data.yaml`` (an Ultralytics data.yaml naming the
clone's images) and the split lists. Rule: train is ``images/train2017`` (128 photos); the
128 of ``images/val2017``, sorted by file name, go alternately to val (1st, 3rd, ...) and test
(2nd, 4th, ...). Nothing is copied.

    git clone https://github.com/lightly-ai/coco128_yolo /path/to/coco128_yolo
    python datasets/prepare_coco128.py /path/to/coco128_yolo --output datasets/coco128
    REG="[['coco128_train','datasets/coco128/data.yaml','train'],
          ['coco128_val','datasets/coco128/data.yaml','val'],
          ['coco128_test','datasets/coco128/data.yaml','test']]"
    python tools/distill.py --train coco128_train --val coco128_val --test coco128_test \\
        --config-dir configs/OwnData/Pretrained --output output/coco128 DATASETS.REGISTER "$REG"
"""

import argparse
import os

import yaml

from wsd_distill.data.datasets.yolo import images_under, yolo_class_names
from wsd_distill.utils.atomic_write import atomic_write_bytes

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clone", help="a clone of github.com/lightly-ai/coco128_yolo")
    parser.add_argument("--output", default="datasets/coco128")
    args = parser.parse_args()
    root = os.path.abspath(os.path.join(args.clone, "object_detection"))
    val = images_under(os.path.join(root, "images", "val2017"))
    if len(val) != 128:
        raise SystemExit(f"{root}/images/val2017 has {len(val)} images, not coco128's 128")
    for name, images in (("val", val[0::2]), ("test", val[1::2])):
        text = "".join(os.path.relpath(p, root) + "\n" for p in images)
        atomic_write_bytes(os.path.join(args.output, f"{name}.txt"), text.encode())
    data = {
        "path": root,
        "train": "images/train2017",
        "val": os.path.abspath(os.path.join(args.output, "val.txt")),
        "test": os.path.abspath(os.path.join(args.output, "test.txt")),
        "names": yolo_class_names(os.path.join(root, "config.yaml")),
    }
    text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_bytes(os.path.join(args.output, "data.yaml"), text.encode())
    print(f"{args.output}/data.yaml: train 128, val 64, test 64 photos of {root}")
