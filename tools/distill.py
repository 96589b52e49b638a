#!/usr/bin/env python
"""The whole method in one command: proposals for every split, the teacher T-WDet, the student
S-Cls without KD, the KD student(s), and the paper's Table 3 (<output>/results.md, with
bootstrap intervals over the test images; results.json; the last KD student's per-class AP gain
in kd_gain_per_class.png; the teacher's top-10 proposals and top-3 labels in
seed<k>/teacher/pictures), each step skipped when done (run it again to resume).

On your own data (datasets declared by DATASETS.REGISTER, on the command line or in
--config-file, or builtin names):

    python tools/distill.py --train mine_train --val mine_val --test mine_test \\
        --output output/mine \\
        DATASETS.REGISTER "[['mine_train', 'train.csv', 'photos', 'classes.txt'], ...]"

On the synthetic shapes benchmark (``make demo``: generated under $DETECTRON2_DATASETS, its
train, val and test splits, configs/Synthetic, output/demo, both KD schedules):

    python tools/distill.py --synthetic --seeds 0 1 2

The configs come from --config-dir (configs/OwnData: small networks from scratch, offline;
configs/OwnData/Pretrained: ImageNet EfficientNet-Lite0; configs/OwnData/VGG16: the paper's,
after the weight converter). The KD students (--kd): "joint" (L_p + L_p' + L_f in one stage,
the default on your data: on the synthetic benchmark it gained over the plain student on every
seed, also from a teacher below that student, and beat the authors' schedule on every seed) and
"two-stage" (the authors'). With --val, the students (without KD and with) are also evaluated on
it, and the one with the best val mAP is named as the one to deploy: a KD student that copied a
weak teacher is not. Each run folder (<output>/seed<k>/<run>) is enough for tools/predict.py
and tools/export_student.py.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import os

from detectron2.utils.logger import setup_logger

from wsd_distill.engine import run_tool, setup_cfg
from wsd_distill.pipeline import (
    KD_SCHEDULES,
    Pipeline,
    add_pipeline_arguments,
    kd_row,
    parse_pipeline_args,
)

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", help="training dataset (name)")
    parser.add_argument("--test", help="dataset of the results table (name)")
    parser.add_argument(
        "--val", default="", help="held-out dataset: the student to deploy is chosen on it"
    )
    parser.add_argument(
        "--unlabeled",
        default="",
        help="photos without labels (a dataset name, e.g. DATASETS.REGISTER's [name, folder]): "
        "the KD students also distil on them, by L_p' and L_f alone",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="the synthetic shapes benchmark (make demo): its three splits, configs/Synthetic "
        "(or --config-dir), output/demo, --kd two-stage joint",
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="stop after the data and proposals"
    )
    parser.add_argument(
        "--config-dir",
        help="folder of T-WDet.yaml, S-Cls.yaml, S-Cls_KD.yaml, S-Cls_KD_stage1/2.yaml "
        "(default: configs/OwnData, or configs/Synthetic with --synthetic)",
    )
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="a config whose DATASETS.REGISTER declares the datasets (passed to every run)",
    )
    kd_help = "default: joint, or two-stage and joint with --synthetic"
    add_pipeline_arguments(parser, None, None, kd_help)
    return parser


def check_datasets(parser, args):
    """--synthetic, or --train and --test; fills in what --synthetic implies."""
    if args.synthetic:
        given = [f"--{s}" for s in ("train", "val", "test") if getattr(args, s)]
        if given:
            parser.error(f"--synthetic uses the benchmark's splits: leave out {' '.join(given)}")
    elif not (args.train and args.test):
        parser.error("name the datasets (--train and --test, --val advised) or give --synthetic")
    args.config_dir = args.config_dir or os.path.join(
        CONFIGS, "Synthetic" if args.synthetic else "OwnData"
    )
    args.output = args.output or ("output/demo" if args.synthetic else "output/own")
    args.kd = args.kd or (list(KD_SCHEDULES) if args.synthetic else ["joint"])
    return args


def main(args):
    """Runs the pipeline; returns the summary of ``summarize`` (also in results.json)."""
    setup_logger(name="wsd_distill")
    opts = list(args.opts)
    if args.config_file:
        opts = ["DATASETS.REGISTER", setup_cfg(args.config_file).DATASETS.REGISTER, *opts]
    variants = args.kd
    if args.synthetic:  # generated first
        pipeline = Pipeline.synthetic(args.config_dir, args)
    else:
        pipeline = Pipeline.from_args(args.config_dir, args, args.train, args.test, args.val, opts)
    print(pipeline.dataset_tables()[0] + "\n\n" + pipeline.make_proposals())
    if args.skip_training:
        return None
    setup_logger(args.output, name="detectron2")
    summary, table = pipeline.run_all(args.seeds, variants)
    print("\n" + table)
    seed = args.seeds[0]
    folders = pipeline.student_folders(seed, variants)
    print(f"Results in {args.output}/results.md (and .json); the students, seed {seed}:")
    for name, folder in folders.items():
        print(f"  {name}, mAP {summary['per_seed'][seed][name]['mAP']:.1f}: {folder}")
    if pipeline.val:
        chosen = summary["chosen_on_val"][seed][0]
        print(f"The best on {pipeline.val}: {chosen}")
    else:
        chosen = kd_row(variants[-1])
        print("(give --val to choose the student to deploy on a held-out split)")
    print(
        f"Predict with it: python tools/predict.py --config-file {folders[chosen]} "
        f"--input <photos> --output <folder>"
    )
    return summary


if __name__ == "__main__":
    parser = get_parser()
    run_tool(main, check_datasets(parser, parse_pipeline_args(parser)))
