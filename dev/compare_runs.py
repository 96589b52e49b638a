#!/usr/bin/env python
"""Test mAPs of trained runs on one dataset, from the scores their evaluation saved
(``<run>/inference/<dataset>/multilabel_scores.npz``), with 95% intervals over bootstrap
resamples of the test images and each run's paired difference from the first; on all the
classes with a positive and, with ``--classes``, on a subset of them (e.g. ADE20K's object
classes, ``datasets/prepare_ade20k.py``'s object_classes.txt), each of the classes with
``--min-positives`` positive test images (a rarer class often drops out of a resample, which
lifts the resampled mAPs above the point estimate).

    python dev/compare_runs.py output/ade_premise/lite0_224 output/ade_premise/lite2_224 \\
        --dataset ade_test --classes datasets/ade20k/object_classes.txt
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import os

import numpy as np
from tabulate import tabulate

from wsd_distill.engine.defaults import RUN_CONFIG
from wsd_distill.engine.run_folders import read_flat_config
from wsd_distill.evaluation.multilabel import bootstrap_map


def saved_scores(run, dataset):
    """(ranking scores [N, K], labels [N, K], class names) of ``run`` on ``dataset``."""
    with np.load(os.path.join(run, "inference", dataset, "multilabel_scores.npz")) as saved:
        ignored = saved["ignored_labels"] > 0  # (ranked last, as in the evaluation)
        scores = np.where(ignored, -np.inf, saved["ranking_scores"])
        labels = (saved["labels"] > 0) & ~ignored
    names = read_flat_config(os.path.join(run, RUN_CONFIG))["MODEL.CLASS_NAMES"]
    return scores, labels, names


def interval(point, resampled):
    low, high = np.percentile(resampled, [2.5, 97.5])
    return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def main(args):
    runs = [saved_scores(run, args.dataset) for run in args.runs]
    labels, names = runs[0][1], runs[0][2]
    for run, (_, other, other_names) in zip(args.runs, runs):
        if other_names != names or not np.array_equal(other, labels):
            raise ValueError(f"{run}: other classes or test labels than {args.runs[0]}")
    subsets = {"all": range(len(names))}
    if args.classes:
        with open(args.classes) as f:
            wanted = {line.strip() for line in f if line.strip()}
        subsets[os.path.basename(args.classes)] = [k for k, n in enumerate(names) if n in wanted]
    headers, columns = ["run"], []
    for subset, classes in subsets.items():
        classes = [k for k in classes if labels[:, k].sum() >= args.min_positives]
        point, resampled = bootstrap_map([r[0] for r in runs], labels, classes, args.resamples)
        headers += [f"mAP, {subset} ({len(classes)} classes)", f"- {args.runs[0]}"]
        columns.append([interval(p, r) for p, r in zip(point, resampled)])
        columns.append(
            [""] + [interval(p - point[0], r - resampled[0]) for p, r in zip(point, resampled)][1:]
        )
    rows = [[run, *cells] for run, *cells in zip(args.runs, *columns)]
    print(
        f"{args.dataset}, {len(labels)} images; 95% intervals over {args.resamples} paired "
        "bootstrap resamples of the images:\n"
    )
    print(tabulate(rows, headers, tablefmt="github"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="run folders (the first is the reference)")
    parser.add_argument("--dataset", required=True, help="the test set their scores are of")
    parser.add_argument("--classes", default="", help="a file of class names, one a line")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--min-positives", type=int, default=1, help="classes with this many test positives"
    )
    main(parser.parse_args())
