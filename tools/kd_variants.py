#!/usr/bin/env python
"""Variants of the distillation on the synthetic benchmark, per seed (the demo's Table 3 rows
for the KD student, ``tools/demo.py`` trains the teachers and plain students it reuses):

- "two stages, all RoIs": the authors' (stage 1: L_f on all the teacher's RoIs; stage 2:
  L_p + L_p'), the demo's S-Cls w/ KD;
- "two stages, top-16 RoIs": L_f on each image's 16 best RoIs by max_k S_rk;
- "two stages, RoIs x proposal score": every pooled RoI multiplied by its EdgeBoxes score, in
  the teacher (trained again so, into teacher_scaled/) and on the student's side of L_f;
- "two stages, teacher dropout": the teacher's dropout active when it gives its targets, as
  the teacher branch of the authors' training nets (``MODEL.DISTILL.TEACHER_DROPOUT``);
- "joint": one stage of L_p + L_p' + L_f (per feature dimension), as many steps as both stages;
- "stage 2 alone (L_p + L_p')" and "stage 1, then L_p alone": which half of KD helps;
- "joint, teacher-gated classes" and "two stages, teacher-gated classes": L_p' only on the
  classes where the teacher's val AP is at least the plain student's
  (``MODEL.DISTILL.PREDICTION_CLASS_WEIGHTS`` from ``teacher_class_gate``);
- "weak teacher (150 steps), ...": the same from the demo's teacher trained 150 steps, not
  500 (teacher_150/): does KD copy a teacher weaker than the plain student?

    python tools/kd_variants.py --output output/demo --seeds 0 1 2

Writes <output>/kd_variants.md (mAP per seed, mean ± std, the paired gain over S-Cls w/o KD)
and kd_variants.json. Like the demo, every finished run is kept and skipped when run again.
"""

import json
import os
import sys

import numpy as np
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402  (tools/demo.py)

from wsd_distill.utils import atomic_write_bytes  # noqa: E402

SCALED = ["MODEL.DISTILL.SCALE_ROI_BY_PROPOSAL_SCORE", True]
TOP_16 = ["MODEL.DISTILL.ROI_SELECT", "top", "MODEL.DISTILL.ROI_TOPK", 16]
TEACHER_DROPOUT = ["MODEL.DISTILL.TEACHER_DROPOUT", True]
WEAK_TEACHER = ["SOLVER.MAX_ITER", 150]


def two_stages(args, opts, seed, teacher_cfg, folder="student_kd", extra=()):
    return demo.train_kd_student(args, opts, seed, teacher_cfg, "two-stage", folder, extra)


def scaled(args, opts, seed, teacher_cfg):
    teacher_scaled = ["MODEL.WSDDN.SCALE_ROI_BY_PROPOSAL_SCORE", True]
    _, teacher_cfg = demo.train_teacher(args, opts, seed, "teacher_scaled", teacher_scaled)
    return two_stages(args, opts, seed, teacher_cfg, "kd_scaled", SCALED)


def stage2_alone(args, opts, seed, teacher_cfg):
    # S-Cls_KD_stage2.yaml from scratch, as many steps as S-Cls w/o KD
    steps = demo.load_config("S-Cls.yaml", "", [*args.opts, *opts]).SOLVER.MAX_ITER
    extra = [*demo.kd_options(teacher_cfg), "MODEL.WEIGHTS", "", "SOLVER.MAX_ITER", steps]
    return demo.run(args, opts, seed, "S-Cls_KD_stage2.yaml", "kd_stage2_alone", extra)[0]


def stage1_then_labels(args, opts, seed, teacher_cfg):
    two_stages(args, opts, seed, teacher_cfg)  # the demo's stage 1 (trained if missing)
    stage1 = os.path.join(args.output, f"seed{seed}", "student_kd_stage1", "model_final.pth")
    extra = [*demo.kd_options(teacher_cfg), "MODEL.WEIGHTS", stage1]
    extra += ["MODEL.DISTILL.PREDICTION_WEIGHT", 0.0]
    return demo.run(args, opts, seed, "S-Cls_KD_stage2.yaml", "kd_stage1_then_labels", extra)[0]


def gated(variant):
    def train(args, opts, seed, teacher_cfg):
        _, student_cfg = demo.run(args, opts, seed, "S-Cls.yaml", "student")
        return demo.train_kd_variant(args, opts, seed, variant, teacher_cfg, student_cfg)

    return train


def weak_teacher(variant):
    """KD from a weak teacher: the demo's teacher trained 150 steps, not 500 (teacher_150/)."""

    def train(args, opts, seed, teacher_cfg):
        _, weak = demo.train_teacher(args, opts, seed, "teacher_150", WEAK_TEACHER)
        _, student_cfg = demo.run(args, opts, seed, "S-Cls.yaml", "student")
        return demo.train_kd_variant(args, opts, seed, variant, weak, student_cfg, "kd_weak")

    return train


VARIANTS = {  # name: function(args, opts, seed, teacher_cfg) -> the KD student's results
    "two stages, all RoIs": two_stages,
    "two stages, top-16 RoIs": lambda *a: two_stages(*a, "kd_top16", TOP_16),
    "two stages, RoIs x proposal score": scaled,
    "two stages, teacher dropout": lambda *a: two_stages(*a, "kd_teacher_dropout", TEACHER_DROPOUT),
    "joint": lambda *a: demo.train_kd_student(*a, "joint"),
    "stage 2 alone (L_p + L_p')": stage2_alone,
    "stage 1, then L_p alone": stage1_then_labels,
    "joint, teacher-gated classes": gated("joint-gated"),
    "two stages, teacher-gated classes": gated("two-stage-gated"),
    "weak teacher (150 steps), two stages": weak_teacher("two-stage"),
    "weak teacher (150 steps), joint, teacher-gated classes": weak_teacher("joint-gated"),
}


def main(args):
    setup_logger(name="wsd_distill")
    demo.prepare_data(args)
    opts = demo.proposal_options(args)
    setup_logger(args.output, name="detectron2")
    mAP = {}
    for seed in args.seeds:
        _, teacher_cfg = demo.train_teacher(args, opts, seed)
        plain = demo.run(args, opts, seed, "S-Cls.yaml", "student")[0]
        mAP.setdefault("S-Cls w/o KD", []).append(plain["multilabel"]["mAP"])
        for variant in args.variants:
            results = VARIANTS[variant](args, opts, seed, teacher_cfg)
            mAP.setdefault(variant, []).append(results["multilabel"]["mAP"])
    rows = []
    baseline = np.array(mAP["S-Cls w/o KD"])
    for name, values in mAP.items():
        gain = np.array(values) - baseline
        rows.append(
            [
                name,
                *(f"{v:.1f}" for v in values),
                f"{np.mean(values):.1f} ± {np.std(values):.1f}",
                "-" if name == "S-Cls w/o KD" else f"{gain.mean():+.1f} ± {gain.std():.1f}",
                "-" if name == "S-Cls w/o KD" else f"{gain.min():+.1f}",
            ]
        )
    headers = ["student", *(f"seed {s}" for s in args.seeds), "mean ± std", "gain", "worst gain"]
    table = (
        f"KD variants, synthetic_shapes_test mAP (gain: paired, over S-Cls w/o KD):\n\n"
        f"{tabulate(rows, headers=headers, tablefmt='github', disable_numparse=True)}\n"
    )
    print("\n" + table)
    atomic_write_bytes(os.path.join(args.output, "kd_variants.md"), table.encode())
    data = {"seeds": args.seeds, "mAP": mAP}
    atomic_write_bytes(os.path.join(args.output, "kd_variants.json"), json.dumps(data).encode())


if __name__ == "__main__":
    parser = demo.get_parser()
    parser.description = __doc__
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="VARIANT"
    )
    main(parser.parse_args())
