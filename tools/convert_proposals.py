#!/usr/bin/env python
"""Convert a WSDDN/OICR ``.mat`` proposal file into a detectron2 proposal pickle.

    python tools/convert_proposals.py --dataset voc_2007_test_multilabel \\
        --mat SelectiveSearchVOC2007test.mat --output proposals/voc07_test_ss.pkl

The .mat holds cells ``images``, ``boxes`` (and optionally ``boxScores``), as MATLAB v5 or
v7.3 files. Box order (x1,y1,x2,y2 or y1,x1,y2,x2) is detected from the image sizes unless
``--box-order`` is given; boxes are taken as MATLAB 1-based pixel indices unless ``--zero-based``.
"""
import argparse

from detectron2.data import DatasetCatalog

import wsd_distill  # noqa: F401  (registers the datasets)
from wsd_distill.data.proposals import load_mat_proposals, save_proposals

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="registered dataset the boxes belong to")
    parser.add_argument("--mat", required=True, help=".mat proposal file")
    parser.add_argument("--output", required=True, help="detectron2 proposal pickle to write")
    parser.add_argument("--box-order", choices=["auto", "xyxy", "yxyx"], default="auto")
    parser.add_argument("--zero-based", action="store_true", help="boxes are 0-based already")
    args = parser.parse_args()
    dicts = DatasetCatalog.get(args.dataset)
    ids, boxes, logits = load_mat_proposals(args.mat, dicts, args.box_order, one_based=not args.zero_based)
    save_proposals(args.output, ids, boxes, logits)
    print(f"Wrote {args.output}: {len(ids)} images, {sum(len(b) for b in boxes) / len(ids):.0f} boxes/image")
