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
   "joint", one stage with the three losses (S-Cls_KD.yaml, student_kd_joint/); "-gated":
   L_p' only on the classes where the teacher's AP on the val split is at least the plain
   student's (student_kd_gated_*; both models' val results in val_results.json);
3. writes the paper's Table 3 (mAP, CF1, OF1 of S-Cls w/o KD, T-WDet, each S-Cls w/ KD) per seed
   with the KD gains, then mean ± std over the seeds and the paired KD gains, to
   <output>/results.md (numbers in results.json), and the last KD student's per-class AP gain,
   classes sorted by frequency, to <output>/kd_gain_per_class.png.
Every training run is seeded by its SEED (the seed), whatever ran before it in the process.
Every step is skipped when its result exists, so an interrupted demo continues where it stopped.
"""

import argparse
import json
import os

import numpy as np
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data import load_proposals_into_dataset
from wsd_distill.data.datasets import prepare_synthetic_shapes
from wsd_distill.data.statistics import dataset_summary, proposal_recall
from wsd_distill.engine import Trainer, setup_cfg
from wsd_distill.modeling.distill_losses import teacher_class_gate
from wsd_distill.utils import atomic_write_bytes
from wsd_distill.visualization import plot_ap_gain, visualize_teacher

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "Synthetic"
)
SPLITS = ("train", "val", "test")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="output/demo", help="folder for results")
    parser.add_argument(
        "--proposals-dir", default="output/proposals", help="folder for the proposal files"
    )
    parser.add_argument(
        "--method", default="edge_boxes", choices=["edge_boxes", "selective_search"]
    )
    parser.add_argument("--max-proposals", type=int, default=500)
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)))
    parser.add_argument(
        "--skip-training", action="store_true", help="stop after the data and proposals"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="train every model once per seed"
    )
    parser.add_argument(
        "--kd",
        nargs="+",
        default=list(DEFAULT_KD),
        choices=list(KD_VARIANTS),
        metavar="VARIANT",
        help=f"the KD students of the table, one row each, of {', '.join(KD_VARIANTS)} "
        f"(default: {' '.join(DEFAULT_KD)})",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides for every step, e.g. DATASETS.SYNTHETIC.NUM_TRAIN 500 "
        "SOLVER.MAX_ITER 100",
    )
    return parser


def print_dataset_summary(names):
    """Print the splits' statistics; returns the training split's (``dataset_summary``)."""
    class_names = MetadataCatalog.get(names[0]).thing_classes
    rows, class_rows = [], []
    summaries = {n: dataset_summary(DatasetCatalog.get(n), class_names) for n in names}
    for name, s in summaries.items():
        rows.append(
            [
                name,
                s["images"],
                s["unlabeled_images"],
                f"{s['labels_per_image']:.2f}",
                f"{s['objects_per_image']:.2f}",
                f"{100 * s['small_object_fraction']:.1f}%",
            ]
        )
    print(
        tabulate(
            rows,
            headers=[
                "dataset",
                "images",
                "unlabeled",
                "labels/img",
                "objects/img",
                "objects <10% area",
            ],
        )
    )
    train = summaries[names[0]]
    freq = train["class_images"] / train["images"]
    for k in np.argsort(-freq):
        class_rows.append([class_names[k], train["class_images"][k], f"{100 * freq[k]:.1f}%"])
    print(f"\nClass frequency in {names[0]} (images containing the class):")
    print(tabulate(class_rows, headers=["class", "images", "share"]))
    co, n = train["co_occurrence"].astype(float), train["images"]
    lift = co * n / np.maximum(np.outer(np.diag(co), np.diag(co)), 1)
    pairs = sorted(
        (
            (lift[i, j], i, j)
            for i in range(len(co))
            for j in range(i + 1, len(co))
            if co[i, j] >= 5
        ),
        reverse=True,
    )
    print(f"\nMost co-occurring class pairs in {names[0]} (lift = P(a, b) / (P(a) P(b))):")
    print(
        tabulate(
            [[class_names[i], class_names[j], int(co[i, j]), f"{v:.2f}"] for v, i, j in pairs[:6]],
            headers=["class a", "class b", "images", "lift"],
        )
    )
    return train


def load_config(name, output_dir, opts):
    cfg = setup_cfg(os.path.join(CONFIGS, name), opts)
    cfg.OUTPUT_DIR = output_dir
    return cfg


def train_and_evaluate(cfg):
    """Train (resuming from the last checkpoint of ``cfg.OUTPUT_DIR``, the config saved there
    as config.yaml), then evaluate on ``DATASETS.TEST`` ({} without test sets); the results
    are kept in ``results.json``."""
    results_file = os.path.join(cfg.OUTPUT_DIR, "results.json")
    if os.path.exists(results_file):
        with open(results_file) as f:
            return json.load(f)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    atomic_write_bytes(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump().encode())
    train_cfg = cfg.clone()
    train_cfg.DATASETS.TEST = ()  # evaluated once, below, rather than by the EvalHook too
    trainer = Trainer(train_cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    results = Trainer.test(cfg, trainer.model) if cfg.DATASETS.TEST else {}
    atomic_write_bytes(results_file, json.dumps(results, indent=1).encode())
    return results


def prepare_data(args):
    """Generate the dataset and proposals, print their statistics; returns the training
    split's summary."""
    cfg = load_config("T-WDet.yaml", args.output, args.opts)
    names = [f"synthetic_shapes_{s}" for s in SPLITS]
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (names[0],), tuple(names[1:])
    root = prepare_synthetic_shapes(cfg)
    print(f"Synthetic shapes benchmark in {root}\n")
    train_summary = print_dataset_summary(names)

    rows = []
    for name in names:
        output = os.path.join(args.proposals_dir, f"{name}_{args.method}")
        stats = None
        if not os.path.exists(output):
            stats = generate_proposal_file(
                DatasetCatalog.get(name),
                output,
                args.method,
                {"max_proposals": args.max_proposals},
                workers=args.workers,
            )
        recall = proposal_recall(load_proposals_into_dataset(DatasetCatalog.get(name), output))
        speed = (
            f"{stats['images_per_s']:.1f} ({stats['images_per_s_per_worker']:.1f})"
            if stats
            else "cached"
        )
        rows.append(
            [
                name,
                output,
                f"{recall['boxes_per_image']:.0f}",
                f"{100 * recall['recall@0.5']:.1f}%",
                f"{100 * recall['recall@0.7']:.1f}%",
                speed,
            ]
        )
    print(f"\n{args.method} proposals ({args.workers} workers):")
    print(
        tabulate(
            rows,
            headers=[
                "dataset",
                "file",
                "boxes/img",
                "GT recall@0.5",
                "recall@0.7",
                "images/s (per worker)",
            ],
        )
    )
    return train_summary


def run(args, opts, seed, config, folder, extra=()):
    """Train and evaluate ``configs/Synthetic/<config>`` into <output>/seed<seed>/<folder>:
    (results, the config)."""
    output = os.path.join(args.output, f"seed{seed}", folder)
    cfg = load_config(config, output, [*args.opts, *opts, *extra, "SEED", seed])
    return train_and_evaluate(cfg), cfg


def train_teacher(args, opts, seed, folder="teacher", extra=()):
    """T-WDet, evaluated and with pictures of its top proposals and labels; (results, config)."""
    extra = ["DATASETS.PROPOSAL_FILES_TEST", (proposal_file(args, "test"),), *extra]
    results, cfg = run(args, opts, seed, "T-WDet.yaml", folder, extra)
    pictures = os.path.join(cfg.OUTPUT_DIR, "pictures")
    if not os.path.isdir(pictures):
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model).load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
        test_set = cfg.DATASETS.TEST[0]
        visualize_teacher(
            model, Trainer.build_test_loader(cfg, test_set), test_set, pictures + ".tmp", 20
        )
        os.replace(pictures + ".tmp", pictures)
    return results, cfg


def kd_options(teacher_cfg):
    """The config overrides naming a trained teacher (its config is saved beside its weights)."""
    teacher_config = os.path.join(teacher_cfg.OUTPUT_DIR, "config.yaml")
    atomic_write_bytes(teacher_config, teacher_cfg.dump().encode())
    return [
        "MODEL.DISTILL.TEACHER_CONFIG",
        teacher_config,
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        os.path.join(teacher_cfg.OUTPUT_DIR, "model_final.pth"),
    ]


def evaluate_on_val(args, cfg):
    """A trained run (its config, ``model_final.pth`` in its OUTPUT_DIR) evaluated on the val
    split, once: kept in the run's ``val_results.json``."""
    results_file = os.path.join(cfg.OUTPUT_DIR, "val_results.json")
    if os.path.exists(results_file):
        with open(results_file) as f:
            return json.load(f)
    cfg = cfg.clone()
    cfg.DATASETS.TEST = ("synthetic_shapes_val",)
    if cfg.MODEL.META_ARCHITECTURE == "WSDDN":
        cfg.DATASETS.PROPOSAL_FILES_TEST = (proposal_file(args, "val"),)
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    results = Trainer.test(cfg, model)
    atomic_write_bytes(results_file, json.dumps(results, indent=1).encode())
    return results


def class_gate_options(args, teacher_cfg, student_cfg):
    """The config override of a teacher-gated L_p': the classes where the teacher's AP on the
    val split is at least the plain student's (``teacher_class_gate``)."""
    classes = MetadataCatalog.get("synthetic_shapes_val").thing_classes
    ap = [
        [evaluate_on_val(args, cfg)["multilabel"].get(f"AP-{c}", np.nan) for c in classes]
        for cfg in (teacher_cfg, student_cfg)
    ]
    return ["MODEL.DISTILL.PREDICTION_CLASS_WEIGHTS", teacher_class_gate(*ap)]


def train_kd_student(args, opts, seed, teacher_cfg, schedule, folder="student_kd", extra=()):
    """S-Cls with KD from the teacher (its config as trained, saved beside it), in the authors'
    two stages (into <folder>_stage1, then <folder>_stage2 from its weights) or one joint stage
    (<folder>_joint); returns the final student's results."""
    kd = [*kd_options(teacher_cfg), *extra]
    if schedule == "joint":
        return run(args, opts, seed, "S-Cls_KD.yaml", f"{folder}_joint", kd)[0]
    _, stage1 = run(args, opts, seed, "S-Cls_KD_stage1.yaml", f"{folder}_stage1", kd)
    weights = ["MODEL.WEIGHTS", os.path.join(stage1.OUTPUT_DIR, "model_final.pth")]
    return run(args, opts, seed, "S-Cls_KD_stage2.yaml", f"{folder}_stage2", [*kd, *weights])[0]


# The KD students the demo can train: (schedule, L_p' gated per class by the teacher).
KD_VARIANTS = {
    "two-stage": ("two-stage", False),  # the authors': L_f, then L_p + L_p'
    "joint": ("joint", False),  # L_p + L_p' + L_f (per dimension) in one stage
    "joint-gated": ("joint", True),  # and L_p' only on the classes the teacher gets right
    "two-stage-gated": ("two-stage", True),
}
DEFAULT_KD = ("two-stage", "joint-gated")
PLAIN, TEACHER = "S-Cls w/o KD", "T-WDet"
METRICS = ("mAP", "CF1", "OF1", "CF1_top3", "OF1_top3", "CorLoc")
HEADERS = ["mAP", "CF1", "OF1", "CF1 top-3", "OF1 top-3", "CorLoc"]


def kd_row(variant):
    return f"S-Cls w/ KD ({variant})"


def gain_row(variant):
    return f"KD gain ({variant})"


def train_kd_variant(args, opts, seed, variant, teacher_cfg, student_cfg, folder="student_kd"):
    """The KD student ``variant`` of ``KD_VARIANTS`` (into <folder>_* or <folder>_gated_*);
    its test results."""
    schedule, gated = KD_VARIANTS[variant]
    if not gated:
        return train_kd_student(args, opts, seed, teacher_cfg, schedule, folder)
    gate = class_gate_options(args, teacher_cfg, student_cfg)
    return train_kd_student(args, opts, seed, teacher_cfg, schedule, f"{folder}_gated", gate)


def metrics(results):
    """{metric: value} of one model's test results (CorLoc only for the teacher)."""
    values = {k: results["multilabel"][k] for k in METRICS[:-1]}
    if "wsod" in results:
        values["CorLoc"] = results["wsod"]["CorLoc"]
    return values


def summarize(runs, variants):
    """``runs`` {seed: {model: results}} (models: PLAIN, TEACHER and ``kd_row(v)`` for each
    of ``variants``) -> {"per_seed": {seed: {model: metrics, gain_row(v): w/ KD - w/o KD}},
    "mean": {model: {metric: [mean, std]}}, "paired_gain": {variant: {metric: [mean, std]}}
    of the per-seed gains}: the numbers of the demo's tables."""
    models = [PLAIN, TEACHER, *(kd_row(v) for v in variants)]
    per_seed = {}
    for seed, results in runs.items():
        rows = {name: metrics(results[name]) for name in models}
        without = rows[PLAIN]
        for v in variants:
            rows[gain_row(v)] = {k: rows[kd_row(v)][k] - without[k] for k in without}
        per_seed[seed] = rows

    def mean_std(name):
        values = [per_seed[seed][name] for seed in runs]
        return {
            k: [float(np.mean([v[k] for v in values])), float(np.std([v[k] for v in values]))]
            for k in values[0]
        }

    return {
        "per_seed": per_seed,
        "mean": {name: mean_std(name) for name in models},
        "paired_gain": {v: mean_std(gain_row(v)) for v in variants},
    }


def results_tables(summary, test_set):
    """The paper's Table 3 per seed (with the KD gain), then mean ± std over the seeds and the
    paired KD gain (mean ± std of the per-seed differences), as Markdown."""

    def cells(values, fmt):
        return [fmt(values[k]) if k in values else "-" for k in METRICS]

    rows = []
    for seed, models in summary["per_seed"].items():
        for name, values in models.items():
            sign = "+" if name.startswith("KD gain") else ""
            rows.append([seed, name, *cells(values, lambda v: f"{v:{sign}.1f}")])
    per_seed = tabulate(
        rows, headers=["seed", "model", *HEADERS], tablefmt="github", disable_numparse=True
    )
    rows = [
        [name, *cells(values, lambda v: f"{v[0]:.1f} ± {v[1]:.1f}")]
        for name, values in summary["mean"].items()
    ]
    rows += [
        [f"{gain_row(v)}, paired", *cells(values, lambda v: f"{v[0]:+.1f} ± {v[1]:.1f}")]
        for v, values in summary["paired_gain"].items()
    ]
    mean = tabulate(rows, headers=["model", *HEADERS], tablefmt="github", disable_numparse=True)
    seeds = list(summary["per_seed"])
    return (
        f"Multi-label classification on {test_set}, per seed (only the students' rows cost a "
        f"plain classifier at test time):\n\n{per_seed}\n\n"
        f"Mean ± std over seeds {seeds}; KD gain (paired): mean ± std of the per-seed "
        f"differences:\n\n{mean}\n"
    )


def proposal_file(args, split):
    """The proposal file of ``split`` that ``prepare_data`` made."""
    return os.path.join(args.proposals_dir, f"synthetic_shapes_{split}_{args.method}")


def proposal_options(args):
    """The config overrides naming the training proposals (the teacher's and, with KD, the
    student's); only the teacher is tested with proposals."""
    return ["DATASETS.PROPOSAL_FILES_TRAIN", (proposal_file(args, "train"),)]


def main(args):
    """Runs the demo; returns the summary of ``summarize`` (also in <output>/results.json)."""
    setup_logger(name="wsd_distill")
    train_summary = prepare_data(args)
    if args.skip_training:
        return None
    opts = proposal_options(args)
    setup_logger(args.output, name="detectron2")
    runs = {}
    for seed in args.seeds:
        teacher, teacher_cfg = train_teacher(args, opts, seed)
        student, student_cfg = run(args, opts, seed, "S-Cls.yaml", "student")
        runs[seed] = {PLAIN: student, TEACHER: teacher}
        for variant in args.kd:
            results = train_kd_variant(args, opts, seed, variant, teacher_cfg, student_cfg)
            runs[seed][kd_row(variant)] = results
    summary = summarize(runs, args.kd)
    test_set = teacher_cfg.DATASETS.TEST[0]
    table = results_tables(summary, test_set)
    atomic_write_bytes(os.path.join(args.output, "results.md"), table.encode())
    atomic_write_bytes(
        os.path.join(args.output, "results.json"), json.dumps(summary, indent=1).encode()
    )
    print("\n" + table)

    class_names = MetadataCatalog.get(test_set).thing_classes
    frequency = train_summary["class_images"]
    shown = kd_row(args.kd[-1])  # the chart shows the last KD student
    # classes without a positive test image have no AP (NaN, no bar)
    ap = {
        name: np.mean(
            [
                [runs[seed][name]["multilabel"].get(f"AP-{c}", np.nan) for c in class_names]
                for seed in runs
            ],
            axis=0,
        )
        for name in (PLAIN, shown)
    }
    chart = os.path.join(args.output, "kd_gain_per_class.png")
    plot_ap_gain(class_names, frequency, ap[PLAIN], ap[shown], chart)
    print(
        f"Results in {args.output}/results.md (and .json); per-class AP gain of {shown} in "
        f"{chart}; "
        f"top-10 proposals and top-3 labels in {args.output}/seed{args.seeds[0]}/teacher/pictures"
    )
    return summary


if __name__ == "__main__":
    main(get_parser().parse_args())
