"""The command line of the tools that run a ``Pipeline`` (``tools/distill.py``,
``dev/kd_variants.py``): their arguments, and their checks."""

import argparse
import os

from ..engine.defaults import parse_args_with_overrides, positive_float, positive_int

# The KD students a pipeline trains: "two-stage", the authors' (L_f, then L_p + L_p'), and
# "joint", L_p + L_p' + L_f (per dimension) in one stage.
KD_SCHEDULES = ("two-stage", "joint")


def parse_pipeline_args(parser, argv=None):
    """The arguments of a tool of ``add_pipeline_arguments``: the overrides after ``--kd ...``
    or ``--seeds ...`` are the overrides' (``parse_args_with_overrides``), then each variant
    and seed is checked."""
    args = parse_args_with_overrides(parser, ("kd", "seeds"), argv)
    try:  # (strings until the overrides are split off: --seeds 0 1 SOLVER.MAX_ITER 9)
        args.seeds = [int(seed) for seed in args.seeds]
    except ValueError:
        parser.error(f"--seeds: expected integers, got {args.seeds}")
    unknown = [v for v in getattr(args, "kd", None) or [] if v not in KD_SCHEDULES]
    if unknown:
        parser.error(f"--kd: expected some of {list(KD_SCHEDULES)}, got {unknown}")
    return args


def add_pipeline_arguments(parser, output, kd=None, kd_help=""):
    """The arguments of a tool that runs a ``Pipeline`` (default folder ``output``); with a
    ``kd_help`` (a tool of ``Pipeline.run_all``), ``--kd``: the KD students of ``KD_SCHEDULES``
    it trains (default ``kd``), and the schedules' ``--epochs`` or ``--budget``."""
    parser.add_argument("--output", default=output, help="folder for the runs and results")
    if kd_help:
        parser.add_argument(
            "--kd",
            nargs="+",
            default=kd,
            metavar="VARIANT",
            help=f"the KD students, of {', '.join(KD_SCHEDULES)} ({kd_help})",
        )
        schedule = parser.add_mutually_exclusive_group()
        schedule.add_argument(
            "--epochs",
            type=positive_float,
            help="the plain student trains this many passes over --train; every model's schedule "
            "(iterations, LR steps, warm-up, checkpoints) is scaled by the same factor (default: "
            "the configs' iterations)",
        )
        schedule.add_argument(
            "--budget",
            type=positive_float,
            metavar="MINUTES",
            help="every model's schedule scaled by one factor so that the training left fits "
            "these minutes on this machine (timed on a few iterations of each model first)",
        )
    parser.add_argument(
        "--proposals-dir", default="output/proposals", help="folder for the proposal files"
    )
    parser.add_argument(
        "--method", default="edge_boxes", choices=["edge_boxes", "selective_search"]
    )
    parser.add_argument(
        "--max-proposals", type=positive_int, default=500, help="proposals per image"
    )
    parser.add_argument(
        "--max-side",
        type=positive_int,
        default=None,
        help="proposals on images downscaled to this longer side at most (default: the "
        "method's, 1333 for edge_boxes, 500 for selective_search)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, min(os.cpu_count() or 1, 8)),
        help="processes making proposals",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        default=[0],
        help="train every model once per seed (integers)",
    )
    parser.add_argument(
        "--teacher-cache",
        action="store_true",
        help="the KD students read the teacher's targets from a cache made once per seed "
        "(tools/cache_teacher.py's) rather than running the teacher at every step: the same "
        "targets (features in float16), faster when the teacher dominates a step",
    )
    parser.add_argument(
        "--min-test-positives",
        type=positive_int,
        default=1,
        help="the test mAPs' bootstrap intervals count the classes with this many positive "
        "test images (the others are listed)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides for every run, e.g. SOLVER.MAX_ITER 100",
    )


def schedule_option_text(option):
    """The command-line option of a ``Pipeline.schedule_option`` ("" for none)."""
    if "epochs" in option:
        return f"--epochs {option['epochs']:g}"
    return f"--budget {option['budget_minutes']:g}" if option else ""
