#!/usr/bin/env python
"""What a trained teacher would hand its student as L_p' targets on a dataset: the softened
image scores ``p'_T`` (at ``MODEL.DISTILL.TEACHER_TEMPERATURE``) and the teacher's own image
scores, each as a ranking (mAP against the labels) and as values (their mean and median on the
present classes, on the absent ones, the share of present classes at 0.5 or more, their sum
per image against the labels per image). A WSDDN's class softmax splits each region among the
classes: on photos of many labels the present classes get low scores, and L_p' then asks the
student for low scores on them.

    python dev/teacher_target_stats.py --teacher output/ade/pretrained/seed1/teacher \\
        --dataset ade_val --proposals output/ade/proposals/ade_val_edge_boxes \\
        DATASETS.REGISTER "$REG"
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse

import numpy as np
import torch
from tabulate import tabulate

from wsd_distill.checkpoint import load_trained_weights
from wsd_distill.engine import Trainer, run_tool, setup_run_cfg
from wsd_distill.evaluation import compute_multilabel_metrics
from wsd_distill.modeling.teacher import wsddn_soft_scores


def target_stats(run, dataset, proposals, opts, temperature):
    """Rows of the table: (scores, their mAP and values) for p'_T and the image scores."""
    cfg = setup_run_cfg(run, ["DATASETS.TEST", (dataset,), "DATALOADER.NUM_WORKERS", 0, *opts])
    cfg.DATASETS.PROPOSAL_FILES_TEST = (proposals,)
    model = Trainer.build_model(cfg)
    load_trained_weights(model, cfg.MODEL.WEIGHTS)
    model.eval()
    scores = {f"p'_T (t = {temperature:g})": [], "image scores": []}
    labels = []
    with torch.no_grad():
        for batch in Trainer.build_test_loader(cfg, dataset):
            out = model.teacher_outputs(batch)
            regions = (out["cls_logits"], out["det_logits"], out["num_regions"])
            scores[f"p'_T (t = {temperature:g})"].append(
                wsddn_soft_scores(*regions, temperature, temperature).numpy()
            )
            scores["image scores"].append(out["image_scores"].numpy())
            labels += [x["multi_labels"].numpy() > 0 for x in batch]
    labels = np.stack(labels)
    rows = []
    for name, values in scores.items():
        s = np.concatenate(values)
        present, absent = s[labels], s[~labels]
        rows.append(
            [
                *(name, f"{compute_multilabel_metrics(s, labels.astype(float))['mAP']:.1f}"),
                *(f"{present.mean():.3f}", f"{np.median(present):.3f}", f"{absent.mean():.4f}"),
                *(f"{(present >= 0.5).mean():.2f}", f"{s.sum(1).mean():.2f}"),
                f"{labels.sum(1).mean():.1f}",
            ]
        )
    return rows


def main(args):
    rows = target_stats(args.teacher, args.dataset, args.proposals, args.opts, args.temperature)
    headers = [
        "targets",
        "mAP",
        "mean, present",
        "median, present",
        "mean, absent",
        "present >= 0.5",
        "sum per image",
        "labels per image",
    ]
    print(f"{args.teacher} on {args.dataset}:\n\n{tabulate(rows, headers, tablefmt='github')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--teacher", required=True, help="the teacher's run folder (config.yaml, model_final.pth)"
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--proposals", required=True, help="the dataset's proposal file")
    parser.add_argument("--temperature", type=float, default=0.5, help="the teacher's t of p'_T")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    run_tool(main, parser.parse_args(), resume="")
