#!/usr/bin/env python
"""Declare ADE20K validation photos as a multi-label benchmark of the 150 SceneParsing classes:
``<output>/{train,val,test}.json``, COCO jsons with image-level labels and boxes, naming the
photos where they lie (nothing is copied).

The photos and masks are those of github.com/lehtoneo/cross-platform-inference-data-api:
``ade20k/ADE_val_<n>.jpg`` at its HEAD (512 x 512, each photo resized with its aspect kept and
padded) and ``ade20k-annotations/ADE_val_<n>.raw`` at commit 7dd37116 (512 x 512 uint8: 0
unlabelled, 1-150 the classes in SceneParsing's order, 255 the padding):

    git clone https://github.com/lehtoneo/cross-platform-inference-data-api ade
    git -C ade archive 7dd37116f07fb3c3e2b512d4e96c06b5674e9c55 ade20k-annotations | tar x -C ade
    python datasets/prepare_ade20k.py ade/ade20k ade/ade20k-annotations --output datasets/ade20k

Labels: a class is present when it covers at least ``--min-pixels`` pixels (default 1024, a
32 x 32 region: 0.4% of the photo). Boxes, for an approximate CorLoc: each 8-connected component
of a present class covering at least ``--min-box-pixels`` (default 256); touching instances of
one class merge into one box, and a class split into small pieces may have a label and no box.
Photos ``--first`` to ``--last`` (default 1-1000: photos 1001-2000 are kept for the project's
independent evaluation; never train, tune or evaluate on them); photo n goes to train when
n % 10 is 0-6, to val when it is 7 and to test when it is 8 or 9 (700 / 100 / 200 of 1-1000).
The stuff classes (wall, sky, floor, ...: ``STUFF_CLASSES``, Mask2Former's ADE20K panoptic
split, 50 of the 150) are written to ``<output>/stuff_classes.txt``, the 100 others, objects,
to ``object_classes.txt``: all 150 are scored, and the objects can be reported apart.

With ``--labelled-every K``, the training photos are also split for semi-supervised runs
(``tools/distill.py --unlabeled``): every K-th of them in number order, from the first, to
``train_labelled.json`` and the others to ``train_unlabeled.json`` (labels kept: ``--unlabeled``
hides them); K = 4: 175 labelled and 525 unlabeled of photos 1-1000.

    REG="[['ade_train','datasets/ade20k/train.json','ade/ade20k'],
          ['ade_val','datasets/ade20k/val.json','ade/ade20k'],
          ['ade_test','datasets/ade20k/test.json','ade/ade20k']]"
    python tools/distill.py --train ade_train --val ade_val --test ade_test \\
        --config-dir configs/OwnData/Pretrained --output output/ade20k DATASETS.REGISTER "$REG"
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import json
import os

import cv2
import numpy as np
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

from wsd_distill.engine import run_tool
from wsd_distill.utils.atomic_write import atomic_write_bytes

SIZE = 512  # the masks' side
PADDING = 255
# Mask2Former's ADE20K panoptic categories with "isthing" 0, as 0-based SceneParsing indices
STUFF_CLASSES = (
    *(0, 1, 2, 3, 4, 5, 6, 9, 11, 13, 16, 17, 21, 25, 26, 28, 29, 34, 40, 46, 48, 51, 52, 54),
    *(59, 60, 61, 63, 68, 77, 79, 84, 91, 94, 96, 99, 100, 101, 105, 106, 109, 113, 114, 117),
    *(122, 128, 131, 140, 141, 145),
)
SPLITS = {"train": range(7), "val": (7,), "test": (8, 9)}  # by the photo's number % 10


def class_names():
    """The 150 SceneParsing class names, in order (detectron2's, stripped)."""
    return [name.strip() for name in ADE20K_SEM_SEG_CATEGORIES]


def split_of(number):
    """The split of photo ``number``: train, val or test."""
    return next(name for name, rests in SPLITS.items() if number % 10 in rests)


def read_mask(path):
    """The 512 x 512 uint8 mask of a .raw file."""
    mask = np.fromfile(path, dtype=np.uint8)
    if mask.size != SIZE * SIZE:
        raise ValueError(f"{path}: {mask.size} bytes, not a {SIZE} x {SIZE} uint8 mask")
    return mask.reshape(SIZE, SIZE)


def present_classes(mask, min_pixels):
    """The classes (1-150) covering at least ``min_pixels`` pixels of ``mask``, sorted."""
    counts = np.bincount(mask.ravel(), minlength=256)
    return [int(c) for c in range(1, 151) if counts[c] >= min_pixels]


def component_boxes(mask, value, min_pixels):
    """[x, y, w, h] of each 8-connected component of ``mask == value`` with at least
    ``min_pixels`` pixels (w and h count pixels: a one-pixel component is 1 x 1)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        (mask == value).astype(np.uint8), connectivity=8
    )
    return [
        [int(x), int(y), int(w), int(h)]
        for x, y, w, h, area in stats[1:count]
        if area >= min_pixels
    ]


def coco_splits(images, masks, first, last, min_pixels, min_box_pixels):
    """{split: COCO json dict} of photos ``first``-``last``."""
    names = class_names()
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(names)]
    splits = {name: {"images": [], "annotations": [], "categories": categories} for name in SPLITS}
    for number in range(first, last + 1):
        stem = f"ADE_val_{number:08d}"
        image, mask_file = f"{stem}.jpg", os.path.join(masks, f"{stem}.raw")
        for path in (os.path.join(images, image), mask_file):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Photo {number}: no file {path}")
        mask = read_mask(mask_file)
        split = splits[split_of(number)]
        split["images"].append({"id": number, "file_name": image, "height": SIZE, "width": SIZE})
        for value in present_classes(mask, min_pixels):
            boxes = component_boxes(mask, value, min_box_pixels) or [None]
            for box in boxes:  # a label without a box: an annotation without bbox
                annotation = {"id": len(split["annotations"]) + 1, "image_id": number}
                annotation.update(category_id=value, iscrowd=0)
                if box is not None:
                    annotation.update(bbox=box, area=box[2] * box[3])
                split["annotations"].append(annotation)
    return splits


def labelled_split(train, every):
    """(labelled, unlabeled): COCO json dicts of every ``every``-th image of ``train`` in its
    order, from the first, and of the others, each with its annotations."""
    labelled = {image["id"] for image in train["images"][::every]}
    halves = []
    for ids in (labelled, {image["id"] for image in train["images"]} - labelled):
        halves.append(
            {
                "images": [i for i in train["images"] if i["id"] in ids],
                "annotations": [a for a in train["annotations"] if a["image_id"] in ids],
                "categories": train["categories"],
            }
        )
    return tuple(halves)


def main(args):
    if not 1 <= args.first <= args.last:
        raise SystemExit(f"--first {args.first} --last {args.last}: not a range of photo numbers")
    if args.labelled_every < 0:
        raise SystemExit(
            f"--labelled-every {args.labelled_every}: expected 0 (no split) or a count of 1 or more"
        )
    splits = coco_splits(
        args.images, args.masks, args.first, args.last, args.min_pixels, args.min_box_pixels
    )
    if args.labelled_every:
        labelled, unlabeled = labelled_split(splits["train"], args.labelled_every)
        splits.update(train_labelled=labelled, train_unlabeled=unlabeled)
    for name, data in splits.items():
        atomic_write_bytes(os.path.join(args.output, f"{name}.json"), json.dumps(data).encode())
    names = class_names()
    for kind, indices in (
        ("stuff", STUFF_CLASSES),
        ("object", [k for k in range(150) if k not in STUFF_CLASSES]),
    ):
        text = "".join(names[k] + "\n" for k in indices)
        atomic_write_bytes(os.path.join(args.output, f"{kind}_classes.txt"), text.encode())
    counts = ", ".join(f"{name} {len(data['images'])}" for name, data in splits.items())
    print(f"{args.output}: photos {args.first}-{args.last} of {args.images}: {counts}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", help="the folder of ADE_val_<n>.jpg")
    parser.add_argument("masks", help="the folder of ADE_val_<n>.raw")
    parser.add_argument("--output", default="datasets/ade20k")
    parser.add_argument("--first", type=int, default=1, help="first photo number")
    parser.add_argument("--last", type=int, default=1000, help="last photo number")
    parser.add_argument("--min-pixels", type=int, default=1024, help="pixels of a present class")
    parser.add_argument("--min-box-pixels", type=int, default=256, help="pixels of a box")
    parser.add_argument(
        "--labelled-every",
        type=int,
        default=0,
        metavar="K",
        help="also split train: every K-th photo labelled, the others unlabeled (0: no split)",
    )
    run_tool(main, parser.parse_args(), resume="")
