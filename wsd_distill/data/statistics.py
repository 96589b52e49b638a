"""Summaries of a multi-label dataset and of its proposals (printed by tools/distill.py)."""

import numpy as np
import torch
from detectron2.structures import Boxes, BoxMode, pairwise_iou

from .proposals import fetch_proposals


def dataset_summary(dataset_dicts, class_names, small_area_fraction=0.1):
    """Counts that describe a multi-label dataset.

    Returns a dict: ``images``, ``unlabeled_images``, ``labels_per_image`` (mean),
    ``class_images`` (images per class, [K]), and where boxes exist ``objects_per_image``,
    ``small_object_fraction`` (boxes under ``small_area_fraction`` of their image's area)
    and ``co_occurrence`` ([K, K] images holding both classes).
    """
    num_classes = len(class_names)
    hot = np.zeros((len(dataset_dicts), num_classes), dtype=np.int64)
    for i, d in enumerate(dataset_dicts):
        hot[i, d["multi_labels"]] = 1
    summary = {
        "images": len(dataset_dicts),
        "unlabeled_images": int((hot.sum(1) == 0).sum()),
        "labels_per_image": float(hot.sum(1).mean()),
        "class_images": hot.sum(0),
        "co_occurrence": hot.T @ hot,
    }
    if all("annotations" in d and "height" in d for d in dataset_dicts):
        boxes = [
            (BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYWH_ABS), d)
            for d in dataset_dicts
            for a in d["annotations"]
        ]
        areas = [w * h / (d["height"] * d["width"]) for (_, _, w, h), d in boxes]
        summary["objects_per_image"] = len(areas) / max(len(dataset_dicts), 1)
        summary["small_object_fraction"] = (
            float(np.mean(np.array(areas) < small_area_fraction)) if areas else 0.0
        )
    return summary


def proposal_recall(dataset_dicts, iou_thresholds=(0.5, 0.7)):
    """Fraction of ground-truth boxes covered by a proposal at each IoU threshold.

    ``dataset_dicts`` carry ``annotations`` and proposals (after ``load_proposals_into_dataset``).
    Returns ``{"boxes_per_image": float, "recall@0.5": float, ...}``.
    """
    best_iou, counts, stores = [], [], {}
    for d in dataset_dicts:
        d = fetch_proposals(dict(d), stores)
        proposals = torch.as_tensor(np.asarray(d["proposal_boxes"], dtype=np.float32)).reshape(
            -1, 4
        )
        counts.append(len(proposals))
        gt = [
            BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
            for a in d.get("annotations", [])
            if not a.get("iscrowd", 0)
        ]
        if gt and len(proposals):
            best_iou.append(
                pairwise_iou(Boxes(torch.tensor(gt)), Boxes(proposals)).max(dim=1).values
            )
        elif gt:
            best_iou.append(torch.zeros(len(gt)))
    best_iou = torch.cat(best_iou) if best_iou else torch.zeros(0)
    result = {"boxes_per_image": float(np.mean(counts)) if counts else 0.0}
    for t in iou_thresholds:
        result[f"recall@{t}"] = (
            float((best_iou >= t).float().mean()) if len(best_iou) else float("nan")
        )
    return result
