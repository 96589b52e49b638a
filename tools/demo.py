#!/usr/bin/env python
"""The main job on the embedded synthetic shapes benchmark (``make demo``).

1. generates the dataset (under $DETECTRON2_DATASETS, default ./datasets) and its EdgeBoxes
   proposals (under --proposals-dir, where configs/Synthetic/ expects them), and prints the
   dataset summary and proposal statistics;
2. for each seed (--seeds), into <output>/seed<k>/: trains the teacher T-WDet
   (configs/Synthetic/T-WDet.yaml), evaluates it as a classifier (mAP) and a detector (CorLoc,
   AP50) and draws its top-10 proposals and top-3 labels (teacher/pictures); trains the student
   without KD (S-Cls.yaml, student/) and the KD students of --kd from that teacher:
   "two-stage", the authors' (S-Cls_KD_stage1/2.yaml, student_kd_stage1/ and student_kd_stage2/);
   "joint", one stage with the three losses (S-Cls_KD.yaml, student_kd_joint/); by default
   both (docs/results.md: joint gained on every seed);
3. writes the paper's Table 3 (mAP, CF1, OF1 of S-Cls w/o KD, T-WDet, each S-Cls w/ KD) per seed
   with the KD gains, then mean ± std over the seeds and the paired KD gains, to
   <output>/results.md (numbers in results.json), and the last KD student's per-class AP gain,
   classes sorted by frequency, to <output>/kd_gain_per_class.png.
Every training run is seeded by its SEED (the seed), whatever ran before it in the process.
Every step is skipped when its result exists, so an interrupted demo continues where it stopped.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: it quiets detectron2's import warnings)
import argparse
import os

from detectron2.utils.logger import setup_logger

from wsd_distill.engine import run_tool
from wsd_distill.engine.pipeline import Pipeline, add_pipeline_arguments, parse_pipeline_args

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "Synthetic"
)
DEFAULT_KD = ("two-stage", "joint")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--skip-training", action="store_true", help="stop after the data and proposals"
    )
    parser.add_argument(
        "--config-dir",
        default=CONFIGS,
        help="folder of the benchmark's five configs (configs/Synthetic/Pretrained: ImageNet "
        "EfficientNet-Lite0, after tools/convert_timm_weights.py)",
    )
    kd_help = f"one row each of the table; default: {' '.join(DEFAULT_KD)}"
    add_pipeline_arguments(parser, "output/demo", list(DEFAULT_KD), kd_help)
    return parser


def main(args):
    """Runs the demo; returns the summary of ``summarize`` (also in <output>/results.json)."""
    setup_logger(name="wsd_distill")
    pipeline = Pipeline.synthetic(args.config_dir, args)
    text, train_summary = pipeline.dataset_tables()
    print(text + "\n\n" + pipeline.make_proposals())
    if args.skip_training:
        return None
    setup_logger(args.output, name="detectron2")
    summary, table = pipeline.run_all(args.seeds, args.kd, train_summary["class_images"])
    print("\n" + table)
    print(
        f"Results in {args.output}/results.md (and .json); per-class AP gain of the "
        f"{args.kd[-1]} KD student in {args.output}/kd_gain_per_class.png; top-10 proposals "
        f"and top-3 labels in {args.output}/seed{args.seeds[0]}/teacher/pictures"
    )
    return summary


if __name__ == "__main__":
    run_tool(main, parse_pipeline_args(get_parser()))
