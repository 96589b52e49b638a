#!/usr/bin/env python
"""Convert proposals into a proposal store (or, if --output ends with .pkl, a detectron2 pickle).

From a detectron2 pickle (its ids are kept), checked against the dataset it was made for
(boxes inside their images) and recording its images' names and sizes, as a generated store
does::

    python tools/convert_proposals.py --pickle coco_train_eb.pkl \\
        --dataset coco_2014_train_multilabel --output output/proposals/coco_train_eb

From a WSDDN/OICR ``.mat`` file, matched to a registered dataset by image name::

    python tools/convert_proposals.py --dataset voc_2007_test_multilabel \\
        --mat SelectiveSearchVOC2007test.mat --output output/proposals/voc07_test_ss

A dataset of your own is named as the other tools name it: trailing ``DATASETS.REGISTER``
(or ``--config-file``) declares it.

The .mat holds cells ``images``, ``boxes`` (and optionally ``boxScores``), as MATLAB v5 or
v7.3 files. Box order (x1,y1,x2,y2 or y1,x1,y2,x2) is detected from the image sizes unless
``--box-order`` is given; boxes are taken as MATLAB 1-based pixel indices unless ``--zero-based``.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: quiets detectron2's warnings; registers)
import argparse
import sys

from detectron2.data import DatasetCatalog

from wsd_distill.data.proposals import (
    image_records,
    load_mat_proposals,
    load_proposals_into_dataset,
    read_proposals,
    save_proposals,
)
from wsd_distill.engine import add_dataset_config_arguments, run_tool, setup_cfg


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pickle", help="detectron2 proposal pickle (or a proposal store, to make a pickle)"
    )
    source.add_argument("--mat", help=".mat proposal file (needs --dataset)")
    parser.add_argument(
        "--dataset", help="registered dataset the boxes belong to (needed with --mat)"
    )
    parser.add_argument(
        "--output", required=True, help="proposal store to write (a .pkl path: detectron2 pickle)"
    )
    parser.add_argument(
        "--dtype", choices=["float32", "float16"], default="float32", help="the store's box dtype"
    )
    parser.add_argument("--box-order", choices=["auto", "xyxy", "yxyx"], default="auto")
    parser.add_argument("--zero-based", action="store_true", help=".mat boxes are 0-based already")
    add_dataset_config_arguments(parser)
    return parser


def main(args):
    setup_cfg(args.config_file, args.opts)  # DATASETS.REGISTER
    if args.mat:
        dicts = DatasetCatalog.get(args.dataset)
        ids, boxes, logits = load_mat_proposals(
            args.mat, dicts, args.box_order, not args.zero_based
        )
        by_id = {d["image_id"]: d for d in dicts}
        images = image_records([by_id[i] for i in ids])  # the store records what it was made for
    else:
        ids, boxes, logits = read_proposals(args.pickle)
        images = {}
        if args.dataset:  # checked (boxes inside their images) and recorded
            by_id = {d["image_id"]: d for d in DatasetCatalog.get(args.dataset)}
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise ValueError(
                    f"{args.pickle}: {len(unknown)} image ids are not in {args.dataset} "
                    f"(first: {unknown[0]!r})"
                )
            dicts = [by_id[i] for i in ids]
            load_proposals_into_dataset(dicts, args.pickle, check_images=True)
            images = image_records(dicts)
        else:
            print(
                "No --dataset: the store records no image names or sizes, so it cannot be "
                "checked against the images it is used with",
                file=sys.stderr,
            )
    meta = {"converted_from": args.mat or args.pickle, **images}
    save_proposals(args.output, ids, zip(boxes, logits), args.dtype, meta=meta)
    print(
        f"Wrote {args.output}: {len(ids)} images, "
        f"{sum(len(b) for b in boxes) / max(len(ids), 1):.0f} boxes/image"
    )


if __name__ == "__main__":
    parser = get_parser()
    args = parser.parse_args()
    if args.mat and not args.dataset:
        parser.error("--mat needs --dataset (the registered dataset whose images the file names)")
    run_tool(main, args, resume="")
