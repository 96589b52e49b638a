#!/usr/bin/env python
"""The main job on the embedded synthetic shapes benchmark (``make demo``).

1. generates the dataset (under $DETECTRON2_DATASETS, default ./datasets) and its EdgeBoxes
   proposals (under --proposals-dir, where configs/Synthetic/ expects them), and prints the
   dataset summary and proposal statistics;
2. trains the teacher T-WDet (configs/Synthetic/T-WDet.yaml) into <output>/teacher, evaluates
   it as a classifier (mAP) and a detector (CorLoc, AP50), and draws its top-10 proposals
   and top-3 labels into <output>/teacher/pictures.
Every step is skipped when its result exists, so an interrupted demo continues where it stopped.
"""
import argparse
import json
import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from wsd_distill import add_wsd_distill_config
from wsd_distill.data import load_proposals_into_dataset
from wsd_distill.data.proposals import atomic_write_bytes
from wsd_distill.data.datasets import prepare_synthetic_shapes
from wsd_distill.data.statistics import dataset_summary, proposal_recall
from wsd_distill.engine import Trainer
from wsd_distill.proposals.generate import generate_proposal_file
from wsd_distill.visualization import visualize_teacher

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "Synthetic")
SPLITS = ("train", "val", "test")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="output/demo", help="folder for results")
    parser.add_argument("--proposals-dir", default="output/proposals", help="folder for the proposal files")
    parser.add_argument("--method", default="edge_boxes", choices=["edge_boxes", "selective_search"])
    parser.add_argument("--max-proposals", type=int, default=500)
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)))
    parser.add_argument("--skip-training", action="store_true", help="stop after the data and proposals")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides for every step, e.g. DATASETS.SYNTHETIC.NUM_TRAIN 500 SOLVER.MAX_ITER 100")  # fmt: skip
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


def load_config(name, output_dir, opts):
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    cfg.merge_from_list(opts)
    cfg.OUTPUT_DIR = output_dir
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def train_and_evaluate(cfg):
    """Train (resuming from the last checkpoint of ``cfg.OUTPUT_DIR``) and evaluate; results are cached."""
    results_file = os.path.join(cfg.OUTPUT_DIR, "results.json")
    if os.path.exists(results_file):
        with open(results_file) as f:
            return json.load(f)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    results = trainer.test(cfg, trainer.model)
    atomic_write_bytes(results_file, json.dumps(results, indent=1).encode())
    return results


def prepare_data(args):
    cfg = load_config("T-WDet.yaml", args.output, args.opts)
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


def main(args):
    setup_logger(name="wsd_distill")
    prepare_data(args)
    if args.skip_training:
        return
    proposals = {s: os.path.join(args.proposals_dir, f"synthetic_shapes_{s}_{args.method}.pkl") for s in SPLITS}
    opts = ["DATASETS.PROPOSAL_FILES_TRAIN", (proposals["train"],), "DATASETS.PROPOSAL_FILES_TEST", (proposals["test"],)]
    teacher_cfg = load_config("T-WDet.yaml", os.path.join(args.output, "teacher"), args.opts)
    teacher_cfg.merge_from_list(opts)
    setup_logger(teacher_cfg.OUTPUT_DIR, name="detectron2")
    teacher = train_and_evaluate(teacher_cfg)
    pictures = os.path.join(teacher_cfg.OUTPUT_DIR, "pictures")
    if not os.path.isdir(pictures):
        model = Trainer.build_model(teacher_cfg)
        DetectionCheckpointer(model).load(os.path.join(teacher_cfg.OUTPUT_DIR, "model_final.pth"))
        test_set = teacher_cfg.DATASETS.TEST[0]
        visualize_teacher(model, Trainer.build_test_loader(teacher_cfg, test_set), test_set, pictures + ".tmp", 20)
        os.replace(pictures + ".tmp", pictures)
    ml, wsod = teacher["multilabel"], teacher.get("wsod", {})
    print(f"\nTeacher T-WDet on {teacher_cfg.DATASETS.TEST[0]}:")
    print(tabulate([["T-WDet", f"{ml['mAP']:.1f}", f"{ml['CF1']:.1f}", f"{ml['OF1']:.1f}",
                     f"{wsod.get('CorLoc', float('nan')):.1f}", f"{wsod.get('AP50', float('nan')):.1f}"]],
                   headers=["model", "mAP", "CF1", "OF1", "CorLoc", "AP50"]))  # fmt: skip
    print(f"Top-10 proposals and top-3 labels drawn in {pictures}")


if __name__ == "__main__":
    main(get_parser().parse_args())
