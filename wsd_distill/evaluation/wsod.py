"""Weakly-supervised localization metrics of a detector: CorLoc and detection AP at IoU 0.5."""

import itertools
import logging
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Boxes, BoxMode, pairwise_iou
from detectron2.utils import comm

from ..data.build import thing_classes_of

logger = logging.getLogger(__name__)


def _iou(a, b):
    return pairwise_iou(
        Boxes(torch.as_tensor(a).reshape(-1, 4)), Boxes(torch.as_tensor(b).reshape(-1, 4))
    ).numpy()


def corloc(predictions, ground_truth, num_classes, iou_threshold=0.5):
    """Correct localization: for every (image, class) with that class in the image, whether the
    class's top-scored box overlaps one of its ground-truth boxes by IoU >= ``iou_threshold``.

    Args:
        predictions (dict): image id -> (boxes [M, 4] XYXY, scores [M], classes [M]).
        ground_truth (dict): image id -> (boxes [G, 4] XYXY, classes [G], difficult [G] bool).
    Returns:
        per-class CorLoc [K] (NaN for a class never present), in [0, 1].
    """
    hits, total = np.zeros(num_classes), np.zeros(num_classes)
    for image_id, (gt_boxes, gt_classes, _) in ground_truth.items():
        boxes, scores, classes = predictions.get(
            image_id, (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
        )
        for k in np.unique(gt_classes):
            total[k] += 1
            mine = classes == k
            if mine.any():
                top = boxes[mine][scores[mine].argmax()]
                hits[k] += _iou(top, gt_boxes[gt_classes == k]).max() >= iou_threshold
    with np.errstate(invalid="ignore"):
        return hits / total


def detection_ap(predictions, ground_truth, num_classes, iou_threshold=0.5):
    """PASCAL VOC detection AP per class (all-point interpolation, as VOC 2010+): detections
    ranked by score over the whole set, each matched greedily to the best unmatched
    ground-truth box of its class with IoU >= threshold; "difficult" boxes neither count nor
    penalise. Same inputs as :func:`corloc`; returns AP [K] (NaN without ground truth)."""
    ap = np.full(num_classes, np.nan)
    for k in range(num_classes):
        gt = {i: (b[c == k], d[c == k]) for i, (b, c, d) in ground_truth.items()}
        num_positives = sum(int((~d).sum()) for _, d in gt.values())
        if num_positives == 0:
            continue
        dets = [
            (s, i, b)
            for i, (boxes, scores, classes) in predictions.items()
            if i in gt
            for b, s in zip(boxes[classes == k], scores[classes == k])
        ]
        dets.sort(key=lambda x: -x[0])
        used = {i: np.zeros(len(b), bool) for i, (b, _) in gt.items()}
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for j, (_, i, box) in enumerate(dets):
            gt_boxes, difficult = gt[i]
            if len(gt_boxes) == 0:
                fp[j] = 1
                continue
            overlaps = _iou(box, gt_boxes)[0]
            best = overlaps.argmax()
            if overlaps[best] < iou_threshold:
                fp[j] = 1
            elif not difficult[best]:
                if used[i][best]:
                    fp[j] = 1
                else:
                    tp[j], used[i][best] = 1, True
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = np.concatenate([[0], tp / num_positives, [1]])
        precision = np.concatenate([[0], tp / np.maximum(tp + fp, np.finfo(float).eps), [0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        changes = np.flatnonzero(recall[1:] != recall[:-1])
        ap[k] = np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1])
    return ap


def ground_truth_of(dataset_dicts):
    """image id -> (XYXY boxes [G, 4], classes [G], difficult [G]) from detectron2 dicts (crowd
    boxes left out)."""
    gt = {}
    for d in dataset_dicts:
        anns = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        gt[d["image_id"]] = (
            np.array(boxes, dtype=np.float32).reshape(-1, 4),
            np.array([a["category_id"] for a in anns], dtype=np.int64),
            np.array([bool(a.get("difficult", 0)) for a in anns], dtype=bool),
        )
    return gt


class WSODEvaluator(DatasetEvaluator):
    """CorLoc and AP50 of ``instances`` outputs against the dataset's boxes (``{"wsod": {...}}``,
    percent)."""

    def __init__(self, dataset_name, iou_threshold=0.5, distributed=True):
        self._dataset_name = dataset_name
        self._class_names = thing_classes_of(dataset_name)
        self._iou = iou_threshold
        self._distributed = distributed

    def reset(self):
        self._predictions = {}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:  # a classifier: nothing to localize
                continue
            inst = out["instances"].to("cpu")
            self._predictions[inp["image_id"]] = (
                inst.pred_boxes.tensor.numpy(),
                inst.scores.numpy(),
                inst.pred_classes.numpy(),
            )

    def evaluate(self):
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = dict(itertools.chain.from_iterable(p.items() for p in gathered))
        if not predictions:
            return {}  # DatasetEvaluators leaves out an empty result
        gt = ground_truth_of(DatasetCatalog.get(self._dataset_name))
        gt = {i: v for i, v in gt.items() if i in predictions}
        k = len(self._class_names)
        corloc_per_class = corloc(predictions, gt, k, self._iou)
        ap_per_class = detection_ap(predictions, gt, k, self._iou)
        results = {
            "CorLoc": 100 * np.nanmean(corloc_per_class),
            "AP50": 100 * np.nanmean(ap_per_class),
        }
        results.update(
            {
                f"AP50-{c}": 100 * a
                for c, a in zip(self._class_names, ap_per_class)
                if np.isfinite(a)
            }
        )
        logger.info(
            f"{self._dataset_name}: CorLoc {results['CorLoc']:.2f}, AP50 {results['AP50']:.2f}"
        )
        return OrderedDict({"wsod": results})
