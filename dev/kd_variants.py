#!/usr/bin/env python
"""Variants of the distillation on the synthetic benchmark, per seed (the demo's Table 3 rows
for the KD student; the teachers and plain students are the demo's runs, reused or trained):

- "two stages, all RoIs": the authors' (stage 1: L_f on all the teacher's RoIs; stage 2:
  L_p + L_p'), the demo's S-Cls w/ KD;
- "two stages, top-16 RoIs": L_f on each image's 16 best RoIs by max_k S_rk;
- "two stages, RoIs x proposal score": every pooled RoI multiplied by its EdgeBoxes score, in
  the teacher (trained again so, into teacher_scaled/) and on the student's side of L_f;
- "two stages, teacher dropout": the teacher's dropout active when it gives its targets, as
  the teacher branch of the authors' training nets (``MODEL.DISTILL.TEACHER_DROPOUT``);
- "joint": one stage of L_p + L_p' + L_f (per feature dimension), as many steps as both stages;
- "stage 2 alone (L_p + L_p')" and "stage 1, then L_p alone": which half of KD helps;
- "weak teacher (150 steps), ...": the same from the demo's teacher trained 150 steps, not
  500 (teacher_150/): does KD copy a teacher weaker than the plain student?
- beyond the paper, each without KD and with joint KD: "ASL" (the asymmetric loss as L_p) and
  "CSRA head" (and its joint student without L_f, or without L_p'): a second table pairs each
  with its own student without KD, the joint and the two-stage KD students;
- "joint, teacher cache": the joint student trained from tools/cache_teacher.py's store.

The removed options' variants (the teacher gate, the teacher's TTA targets, EMA, the 8-bit
cache) are measured in docs/results.md.

    python dev/kd_variants.py --output output/demo --seeds 0 1 2

Writes <output>/kd_variants.md (mAP per seed, mean ± std, the paired gain over S-Cls w/o KD)
and kd_variants.json. Like the demo, every finished run is kept and skipped when run again.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import json
import os

import numpy as np
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from wsd_distill.pipeline import (
    PLAIN,
    Pipeline,
    add_pipeline_arguments,
    parse_pipeline_args,
)
from wsd_distill.utils import atomic_write_bytes

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "Synthetic"
)
SCALED = ["MODEL.DISTILL.SCALE_ROI_BY_PROPOSAL_SCORE", True]
TOP_16 = ["MODEL.DISTILL.ROI_TOPK", 16]
TEACHER_DROPOUT = ["MODEL.DISTILL.TEACHER_DROPOUT", True]
WEAK_TEACHER = ["SOLVER.MAX_ITER", 150]
# Beyond the paper (docs/distillation.md)
ASL = ["MODEL.STUDENT.LABEL_LOSS", "asl"]
CSRA = ["MODEL.STUDENT.HEAD", "csra"]
NO_L_F, NO_L_P2 = ["MODEL.DISTILL.FEATURE_WEIGHT", 0.0], ["MODEL.DISTILL.PREDICTION_WEIGHT", 0.0]


def kd(schedule, folder, extra=()):
    """The KD student of ``schedule`` ("two-stage" or "joint") with the config overrides
    ``extra``, into ``folder``_stage1/2 or ``folder``_joint."""

    def train(pipeline, seed, teacher_cfg):
        return pipeline.kd_student(seed, teacher_cfg, schedule, folder, extra)

    return train


def scaled(pipeline, seed, teacher_cfg):
    teacher_scaled = ["MODEL.WSDDN.SCALE_ROI_BY_PROPOSAL_SCORE", True]
    _, teacher_cfg = pipeline.teacher(seed, "teacher_scaled", teacher_scaled)
    return kd("two-stage", "kd_scaled", SCALED)(pipeline, seed, teacher_cfg)


def stage2_alone(pipeline, seed, teacher_cfg):
    # S-Cls_KD_stage2.yaml from scratch, as many steps as S-Cls w/o KD
    steps = pipeline.config("student", "", seed).SOLVER.MAX_ITER
    extra = ["MODEL.DISTILL.TEACHER_CONFIG", teacher_cfg.OUTPUT_DIR, "MODEL.WEIGHTS", ""]
    extra += ["SOLVER.MAX_ITER", steps]
    return pipeline.run("kd_stage2", "kd_stage2_alone", seed, extra)[0]


def stage1_then_labels(pipeline, seed, teacher_cfg):
    pipeline.kd_student(seed, teacher_cfg, "two-stage")  # the demo's stage 1 (trained if missing)
    stage1 = os.path.join(pipeline.output, f"seed{seed}", "student_kd_stage1")
    extra = ["MODEL.DISTILL.TEACHER_CONFIG", teacher_cfg.OUTPUT_DIR, "MODEL.WEIGHTS", stage1]
    extra += ["MODEL.DISTILL.PREDICTION_WEIGHT", 0.0]
    return pipeline.run("kd_stage2", "kd_stage1_then_labels", seed, extra)[0]


def cached_joint(pipeline, seed, teacher_cfg):
    """The joint KD student from a teacher cache (tools/cache_teacher.py's, written into
    seed<seed>/teacher_cache if missing), into kd_cached_joint."""
    kd = ["MODEL.DISTILL.TEACHER_CONFIG", teacher_cfg.OUTPUT_DIR]
    cache = pipeline.cached_teacher(seed, kd)
    cached = [*kd, "MODEL.DISTILL.TEACHER_CACHE", cache, "MODEL.LOAD_PROPOSALS", False]
    return pipeline.run("kd_joint", "kd_cached_joint", seed, cached)[0]


def without_kd(folder, extra):
    """S-Cls w/o KD with the config overrides ``extra``, into ``folder``."""

    def train(pipeline, seed, teacher_cfg):
        return pipeline.run("student", folder, seed, extra)[0]

    return train


def variant(schedule, weak=False):
    """The pipeline's KD student of ``schedule``; ``weak``: from the teacher trained 150 steps,
    not 500 (teacher_150/), into kd_weak_*."""

    def train(pipeline, seed, teacher_cfg):
        if weak:
            _, teacher_cfg = pipeline.teacher(seed, "teacher_150", WEAK_TEACHER)
        folder = "kd_weak" if weak else "student_kd"
        return pipeline.kd_student(seed, teacher_cfg, schedule, folder)

    return train


VARIANTS = {  # name: function(pipeline, seed, teacher_cfg) -> the KD student's results
    "two stages, all RoIs": variant("two-stage"),
    "two stages, top-16 RoIs": kd("two-stage", "kd_top16", TOP_16),
    "two stages, RoIs x proposal score": scaled,
    "two stages, teacher dropout": kd("two-stage", "kd_teacher_dropout", TEACHER_DROPOUT),
    "joint": variant("joint"),
    "stage 2 alone (L_p + L_p')": stage2_alone,
    "stage 1, then L_p alone": stage1_then_labels,
    "weak teacher (150 steps), two stages": variant("two-stage", weak=True),
    "weak teacher (150 steps), joint": variant("joint", weak=True),
    "ASL, without KD": without_kd("student_asl", ASL),
    "ASL, joint": kd("joint", "kd_asl", ASL),
    "CSRA head, without KD": without_kd("student_csra", CSRA),
    "CSRA head, joint": kd("joint", "kd_csra", CSRA),
    "CSRA head, joint without L_f": kd("joint", "kd_csra_no_lf", [*CSRA, *NO_L_F]),
    "CSRA head, joint without L_p'": kd("joint", "kd_csra_no_lp2", [*CSRA, *NO_L_P2]),
    "joint, teacher cache": cached_joint,
}
# Paired comparisons of the variants beyond the paper: variant -> its student without KD
WITHOUT_KD = {
    "ASL, joint": "ASL, without KD",
    "CSRA head, joint": "CSRA head, without KD",
    "CSRA head, joint without L_f": "CSRA head, without KD",
    "CSRA head, joint without L_p'": "CSRA head, without KD",
}


def main(args):
    setup_logger(name="wsd_distill")
    pipeline = Pipeline.synthetic(CONFIGS, args)
    print(pipeline.make_proposals())
    setup_logger(args.output, name="detectron2")
    mAP = {}
    for seed in args.seeds:
        _, teacher_cfg = pipeline.teacher(seed)
        mAP.setdefault(PLAIN, []).append(pipeline.student(seed)[0]["multilabel"]["mAP"])
        for name in args.variants:
            results = VARIANTS[name](pipeline, seed, teacher_cfg)
            mAP.setdefault(name, []).append(results["multilabel"]["mAP"])
    rows = []
    baseline = np.array(mAP[PLAIN])
    for name, values in mAP.items():
        gain = np.array(values) - baseline
        rows.append(
            [
                name,
                *(f"{v:.1f}" for v in values),
                f"{np.mean(values):.1f} ± {np.std(values):.1f}",
                "-" if name == PLAIN else f"{gain.mean():+.1f} ± {gain.std():.1f}",
                "-" if name == PLAIN else f"{gain.min():+.1f}",
            ]
        )
    headers = ["student", *(f"seed {s}" for s in args.seeds), "mean ± std", "gain", "worst gain"]
    table = (
        f"KD variants, synthetic_shapes_test mAP (gain: paired, over S-Cls w/o KD):\n\n"
        f"{tabulate(rows, headers=headers, tablefmt='github', disable_numparse=True)}\n"
    )
    table += paired_table(mAP)
    print("\n" + table)
    atomic_write_bytes(os.path.join(args.output, "kd_variants.md"), table.encode())
    data = {"seeds": args.seeds, "mAP": mAP}
    atomic_write_bytes(os.path.join(args.output, "kd_variants.json"), json.dumps(data).encode())


def paired_table(mAP):
    """Each variant beyond the paper minus its own student without KD, minus the joint KD
    student and minus the authors' two stages (where they ran): mean ± std (worst)."""
    partners = ["joint", "two stages, all RoIs"]
    rows = []
    for name, own in WITHOUT_KD.items():
        if name not in mAP:
            continue
        cells = []
        for partner in [own, *partners]:
            if partner not in mAP:
                cells.append("-")
                continue
            diff = np.array(mAP[name]) - np.array(mAP[partner])
            cells.append(f"{diff.mean():+.1f} ± {diff.std():.1f} ({diff.min():+.1f})")
        rows.append([name, *cells])
    if not rows:
        return ""
    headers = ["variant", "minus its w/o KD", "minus joint", "minus two stages"]
    return (
        "\nBeyond the paper, paired differences in mAP, mean ± std (worst):\n\n"
        f"{tabulate(rows, headers=headers, tablefmt='github', disable_numparse=True)}\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="VARIANT"
    )
    add_pipeline_arguments(parser, "output/demo")
    main(parse_pipeline_args(parser))
