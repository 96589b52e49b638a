#!/usr/bin/env python
"""The main job on the embedded synthetic shapes benchmark (``make demo``).

Generates the dataset (under $DETECTRON2_DATASETS, default ./datasets) and its EdgeBoxes
proposals (under --proposals-dir, where configs/Synthetic/ expects them), then prints the
dataset summary and proposal statistics.
"""
import argparse
import os

import numpy as np
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from wsd_distill import add_wsd_distill_config
from wsd_distill.data import load_proposals_into_dataset
from wsd_distill.data.datasets import prepare_synthetic_shapes
from wsd_distill.data.statistics import dataset_summary, proposal_recall
from wsd_distill.proposals.generate import generate_proposal_file

SPLITS = ("train", "val", "test")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="output/demo", help="folder for results")
    parser.add_argument("--proposals-dir", default="output/proposals", help="folder for the proposal files")
    parser.add_argument("--method", default="edge_boxes", choices=["edge_boxes", "selective_search"])
    parser.add_argument("--max-proposals", type=int, default=500)
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. DATASETS.SYNTHETIC.NUM_TRAIN 500")
    return parser


def print_dataset_summary(names):
    class_names = MetadataCatalog.get(names[0]).thing_classes
    rows, class_rows = [], []
    summaries = {n: dataset_summary(DatasetCatalog.get(n), class_names) for n in names}
    for name, s in summaries.items():
        rows.append([name, s["images"], s["unlabeled_images"], f"{s['labels_per_image']:.2f}",
                     f"{s['objects_per_image']:.2f}", f"{100 * s['small_object_fraction']:.1f}%"])  # fmt: skip
    print(tabulate(rows, headers=["dataset", "images", "unlabeled", "labels/img", "objects/img", "objects <10% area"]))
    train = summaries[names[0]]
    freq = train["class_images"] / train["images"]
    for k in np.argsort(-freq):
        class_rows.append([class_names[k], train["class_images"][k], f"{100 * freq[k]:.1f}%"])
    print(f"\nClass frequency in {names[0]} (images containing the class):")
    print(tabulate(class_rows, headers=["class", "images", "share"]))
    co, n = train["co_occurrence"].astype(float), train["images"]
    lift = co * n / np.maximum(np.outer(np.diag(co), np.diag(co)), 1)
    pairs = sorted(((lift[i, j], i, j) for i in range(len(co)) for j in range(i + 1, len(co)) if co[i, j] >= 5), reverse=True)
    print(f"\nMost co-occurring class pairs in {names[0]} (lift = P(a, b) / (P(a) P(b))):")
    print(tabulate([[class_names[i], class_names[j], int(co[i, j]), f"{v:.2f}"] for v, i, j in pairs[:6]],
                   headers=["class a", "class b", "images", "lift"]))  # fmt: skip


def main(args):
    setup_logger(name="wsd_distill")
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_list(args.opts)
    names = [f"synthetic_shapes_{s}" for s in SPLITS]
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (names[0],), tuple(names[1:])
    root = prepare_synthetic_shapes(cfg)
    print(f"Synthetic shapes benchmark in {root}\n")
    print_dataset_summary(names)

    rows = []
    for name in names:
        output = os.path.join(args.proposals_dir, f"{name}_{args.method}.pkl")
        stats = None
        if not os.path.exists(output):
            stats = generate_proposal_file(
                DatasetCatalog.get(name), output, args.method, {"max_proposals": args.max_proposals}, workers=args.workers
            )
        recall = proposal_recall(load_proposals_into_dataset(DatasetCatalog.get(name), output))
        speed = f"{stats['images_per_s']:.1f} ({stats['images_per_s_per_worker']:.1f})" if stats else "cached"
        rows.append([name, output, f"{recall['boxes_per_image']:.0f}", f"{100 * recall['recall@0.5']:.1f}%",
                     f"{100 * recall['recall@0.7']:.1f}%", speed])  # fmt: skip
    print(f"\n{args.method} proposals ({args.workers} workers):")
    print(tabulate(rows, headers=["dataset", "file", "boxes/img", "GT recall@0.5", "recall@0.7", "images/s (per worker)"]))


if __name__ == "__main__":
    main(get_parser().parse_args())
