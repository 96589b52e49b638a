"""Weakly-supervised localization metrics of a detector: CorLoc and detection AP at IoU 0.5."""

import itertools
import logging
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.pascal_voc_evaluation import voc_ap
from detectron2.structures import Boxes, BoxMode, pairwise_iou
from detectron2.utils import comm

from ..data.build import thing_classes_of

logger = logging.getLogger(__name__)


def _iou(a, b):
    return pairwise_iou(
        Boxes(torch.as_tensor(a).reshape(-1, 4)), Boxes(torch.as_tensor(b).reshape(-1, 4))
    ).numpy()


def is_hit(iou, threshold, inclusive=True):
    """Whether an overlap counts as a correct localization: IoU >= threshold (``inclusive``, as
    the VOC devkit's MATLAB code and WSDDN's) or IoU > threshold (pcl.pytorch, detectron2)."""
    return iou >= threshold if inclusive else iou > threshold


def corloc(predictions, ground_truth, num_classes, iou_threshold=0.5, inclusive=True):
    """Correct localization: for every (image, class) with that class in the image, whether the
    class's top-scored box overlaps one of its ground-truth boxes (:func:`is_hit`).

    Args:
        predictions (dict): image id -> (boxes [M, 4] XYXY, scores [M], classes [M]); the
            class's top box is its best-scored row (one row per class: each class's best region
            over all proposals, as pcl.pytorch's ``box_results_for_corloc``).
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
                iou = _iou(top, gt_boxes[gt_classes == k]).max()
                hits[k] += is_hit(iou, iou_threshold, inclusive)
    with np.errstate(invalid="ignore"):
        return hits / total


def detection_ap(
    predictions, ground_truth, num_classes, iou_threshold=0.5, use_07_metric=False, inclusive=True
):
    """PASCAL VOC detection AP per class, as detectron2's ``voc_eval``: detections ranked by
    score over the whole set, each matched to the ground-truth box of its class it overlaps
    most, a hit (:func:`is_hit`) if that box is not matched yet; "difficult" boxes neither
    count nor penalise. AP from detectron2's ``voc_ap``: all-point interpolation (VOC 2010+),
    or VOC 2007's 11-point metric with ``use_07_metric``. Same inputs as :func:`corloc`;
    returns AP [K] (NaN without ground truth)."""
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
            if not is_hit(overlaps[best], iou_threshold, inclusive):
                fp[j] = 1
            elif not difficult[best]:
                if used[i][best]:
                    fp[j] = 1
                else:
                    tp[j], used[i][best] = 1, True
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap[k] = voc_ap(tp / num_positives, precision, use_07_metric)
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


AP_METRICS = ("", "all_point", "11_point")


def uses_voc07_metric(dataset_name, ap_metric=""):
    """Whether AP50 of ``dataset_name`` is VOC 2007's 11-point metric: ``ap_metric``
    "11_point" or "all_point", or "" for the dataset's convention (11-point for a dataset
    whose metadata says ``year`` 2007, as detectron2's ``PascalVOCDetectionEvaluator``)."""
    if ap_metric not in AP_METRICS:
        raise ValueError(f"ap_metric must be one of {AP_METRICS}, got {ap_metric!r}")
    if ap_metric:
        return ap_metric == "11_point"
    return str(MetadataCatalog.get(dataset_name).get("year", "")) == "2007"


def boxed_ground_truth(dataset_dicts, dataset_name):
    """:func:`ground_truth_of` for the images whose every label has a box: a dataset with
    image-level labels only gives none (the evaluation is skipped), one with boxes on some
    images is evaluated on those (an image with an unboxed label would count right detections
    of it as false positives); the log line says how many images were left out."""
    gt = ground_truth_of(dataset_dicts)
    boxed = {
        d["image_id"]
        for d in dataset_dicts
        if d.get("annotations")
        and set(d.get("multi_labels", ())) <= {a["category_id"] for a in d["annotations"]}
    }  # (a crowd box counts: its class is not unboxed)
    boxed = {i: v for i, v in gt.items() if i in boxed}
    if not boxed:
        logger.info(f"{dataset_name}: no image has boxes for its labels: CorLoc, AP50 skipped")
    elif len(boxed) < len(gt):
        logger.info(
            f"{dataset_name}: CorLoc and AP50 on the {len(boxed)} of {len(gt)} images whose "
            f"every label has a box"
        )
    return boxed


class WSODEvaluator(DatasetEvaluator):
    """CorLoc and AP50 of a detector's outputs against the dataset's boxes (``{"wsod": {...}}``,
    percent; the log line says which AP and which IoU comparison).

    AP50 reads each output's ``instances`` (the post-processed detections). CorLoc reads
    ``class_top_regions`` when the output has them (one box per class: its best region over
    all proposals, before any threshold or NMS, as pcl.pytorch's CorLoc), otherwise each
    class's best box in ``instances`` (e.g. a detectron2 detector's outputs).
    """

    def __init__(
        self,
        dataset_name,
        iou_threshold=0.5,
        distributed=True,
        ap_metric="",
        iou_inclusive=True,
    ):
        self._dataset_name = dataset_name
        self._class_names = thing_classes_of(dataset_name)
        self._iou = iou_threshold
        self._distributed = distributed
        self._use_07_metric = uses_voc07_metric(dataset_name, ap_metric)
        self._inclusive = iou_inclusive

    def reset(self) -> None:
        self._predictions = {}

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:  # a classifier: nothing to localize
                continue
            self._predictions[inp["image_id"]] = tuple(
                _as_arrays(out[key].to("cpu"))
                for key in ("instances", "class_top_regions")
                if key in out
            )

    def evaluate(self) -> dict | None:
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = dict(itertools.chain.from_iterable(p.items() for p in gathered))
        if not predictions:
            return {}  # DatasetEvaluators leaves out an empty result
        gt = boxed_ground_truth(DatasetCatalog.get(self._dataset_name), self._dataset_name)
        gt = {i: v for i, v in gt.items() if i in predictions}
        if not gt:
            return {}  # (logged by boxed_ground_truth)
        k = len(self._class_names)
        detections = {i: p[0] for i, p in predictions.items()}
        top_regions = {i: p[-1] for i, p in predictions.items()}
        corloc_per_class = corloc(top_regions, gt, k, self._iou, self._inclusive)
        ap_per_class = detection_ap(
            detections, gt, k, self._iou, self._use_07_metric, self._inclusive
        )
        metric = "11_point" if self._use_07_metric else "all_point"
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
            f"{self._dataset_name}: CorLoc {results['CorLoc']:.2f}, AP50 {results['AP50']:.2f} "
            f"({metric} AP, IoU {'>=' if self._inclusive else '>'} {self._iou})"
        )
        return OrderedDict({"wsod": results})


def _as_arrays(instances):
    """(boxes [M, 4], scores [M], classes [M]) numpy arrays of detection Instances."""
    return (
        instances.pred_boxes.tensor.numpy(),
        instances.scores.numpy(),
        instances.pred_classes.numpy(),
    )
