#!/usr/bin/env python
"""The whole method on your own data, in one command: proposals for every split, the teacher
T-WDet, the student S-Cls without KD, the KD student(s), and the paper's Table 3 for your data
(<output>/results.md), each step skipped when done (run it again to resume):

    python tools/distill.py --train mine_train --test mine_test \\
        --output output/mine \\
        DATASETS.REGISTER "[['mine_train', 'train.csv', 'photos', 'classes.txt'], ...]"

Datasets are declared by DATASETS.REGISTER (on the command line, or in --config-file) or are
builtin names. The configs come from --config-dir (configs/OwnData: small networks from
scratch, offline; configs/OwnData/VGG16: the paper's, after the weight converter). The KD
student by default is "joint" (L_p + L_p' + L_f in one stage: on the synthetic benchmark it
gained over the plain student on every seed, also from a teacher below that student, and beat
the authors' "two-stage" schedule on every seed). With --val, the students (without KD and with) are also evaluated on it, and the one with the best val mAP is
named as the one to deploy: a KD student that copied a weak teacher is not. Each run folder
(<output>/seed<k>/<run>) is enough for tools/predict.py and tools/export_student.py.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: it quiets detectron2's import warnings)
import argparse
import os

from detectron2.utils.logger import setup_logger

from wsd_distill.engine import run_tool, setup_cfg
from wsd_distill.engine.pipeline import (
    Pipeline,
    add_pipeline_arguments,
    kd_row,
    parse_pipeline_args,
)

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "OwnData"
)


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", required=True, help="training dataset (name)")
    parser.add_argument("--test", required=True, help="dataset of the results table (name)")
    parser.add_argument(
        "--val",
        default="",
        help="held-out dataset: the student to deploy is chosen on it",
    )
    parser.add_argument(
        "--config-dir",
        default=CONFIGS,
        help="folder of T-WDet.yaml, S-Cls.yaml, S-Cls_KD.yaml, S-Cls_KD_stage1/2.yaml",
    )
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="a config whose DATASETS.REGISTER declares the datasets (passed to every run)",
    )
    add_pipeline_arguments(parser, "output/own", ["joint"], "default: joint")
    return parser


def main(args):
    setup_logger(name="wsd_distill")
    opts = list(args.opts)
    if args.config_file:
        opts = ["DATASETS.REGISTER", setup_cfg(args.config_file).DATASETS.REGISTER, *opts]
    variants = args.kd
    pipeline = Pipeline.from_args(args.config_dir, args, args.train, args.test, args.val, opts)
    print(pipeline.dataset_tables()[0] + "\n\n" + pipeline.make_proposals())
    setup_logger(args.output, name="detectron2")
    summary, table = pipeline.run_all(args.seeds, variants)
    print("\n" + table)
    seed = args.seeds[0]
    folders = pipeline.student_folders(seed, variants)
    print(f"Results in {args.output}/results.md (and .json); the students, seed {seed}:")
    for name, folder in folders.items():
        print(f"  {name}, mAP {summary['per_seed'][seed][name]['mAP']:.1f}: {folder}")
    if args.val:
        chosen = summary["chosen_on_val"][seed][0]
        print(f"The best on {args.val}: {chosen}")
    else:
        chosen = kd_row(variants[-1])
        print("(give --val to choose the student to deploy on a held-out split)")
    print(
        f"Predict with it: python tools/predict.py --config-file {folders[chosen]} "
        f"--input <photos> --output <folder>"
    )
    return summary


if __name__ == "__main__":
    run_tool(main, parse_pipeline_args(get_parser()))
