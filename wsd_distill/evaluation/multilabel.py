"""Multi-label classification metrics: mAP, CP/CR/CF1 and OP/OR/OF1 ("all" and top-k)."""

import itertools
import logging
import os
from collections import OrderedDict

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from tabulate import tabulate

from ..data.build import thing_classes_of

logger = logging.getLogger(__name__)


def average_precision_per_class(scores, labels):
    """Non-interpolated AP of each column, as ``sklearn.metrics.average_precision_score``.

    AP = sum over score thresholds of (recall increase) x (precision at that threshold): tied
    scores form one threshold, so every positive in a tie group gets the precision at the
    group's end. Args: scores float [N, K], labels {0, 1} [N, K]. Returns float64 [K], NaN
    for a class without positives.
    """
    scores, labels = np.ascontiguousarray(scores.T), np.ascontiguousarray(labels.T)  # [K, N]
    n = scores.shape[1]
    order = np.argsort(-scores, axis=1)  # any order within a tie group gives the same AP
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_labels = np.take_along_axis(labels, order, axis=1)
    precision = np.cumsum(sorted_labels, axis=1, dtype=np.float64) / np.arange(1, n + 1)
    group_end = np.ones(sorted_scores.shape, dtype=bool)
    group_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    end_index = np.where(group_end, np.arange(n), n)
    end_index = np.minimum.accumulate(end_index[:, ::-1], axis=1)[:, ::-1]  # next group end
    group_precision = np.take_along_axis(precision, end_index, axis=1)
    num_positives = sorted_labels.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (group_precision * sorted_labels).sum(axis=1) / num_positives


def _precision_recall_f1(predicted, labels, valid):
    """Per-class averaged (C*) and pooled (O*) precision, recall, F1 of bool predictions [N, K]."""
    correct = (predicted & labels).sum(axis=0).astype(np.float64)
    num_predicted = predicted.sum(axis=0).astype(np.float64)
    num_gt = labels.sum(axis=0).astype(np.float64)
    cp = np.mean(
        np.divide(correct, num_predicted, out=np.zeros_like(correct), where=num_predicted > 0)[
            valid
        ]
    )
    cr = np.mean(correct[valid] / num_gt[valid])
    op = correct.sum() / max(num_predicted.sum(), 1.0)
    o_r = correct.sum() / max(num_gt.sum(), 1.0)

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    return {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": o_r, "OF1": f1(op, o_r)}


def compute_multilabel_metrics(
    scores,
    labels,
    threshold=0.5,
    top_k=3,
    ignored=None,
    ranking_scores=None,
):
    """Multi-label metrics of scores [N, K] against binary labels [N, K], in percent.

    Returns a dict with ``mAP``; ``CP CR CF1 OP OR OF1`` for the labels scored >= ``threshold``;
    the same with suffix ``_top{top_k}`` for each image's ``top_k`` best labels that also score
    >= ``threshold`` (ML-GCN's code, whose convention the literature's top-3 columns use);
    ``AP`` (per class, float [K], NaN where a class has no positive); ``num_excluded_classes``
    (classes without a positive, left out of mAP and of the per-class averages).

    ``ignored`` (binary [N, K], optional): (image, class) pairs left out of AP, as the VOC
    devkit's and ML-GCN's difficult examples; the F1 metrics count them as negatives (as
    ML-GCN's code does).

    ``ranking_scores`` ([N, K], optional): what AP and the top-k order rank, when the scores
    tie where the model does not, e.g. a classifier's logits (ML-GCN's code ranks logits;
    float32 sigmoids of logits above ~17 all equal 1.0); it must order each class as
    ``scores`` does. The thresholds apply to ``scores``.
    """
    scores = np.asarray(scores)
    ranking = scores if ranking_scores is None else np.asarray(ranking_scores)
    labels = np.asarray(labels) > 0
    if scores.shape != labels.shape or scores.ndim != 2 or ranking.shape != scores.shape:
        raise ValueError(
            f"scores {scores.shape}, ranking scores {ranking.shape} and labels {labels.shape} "
            f"must all be [N, K]"
        )
    if ignored is not None:
        ignored = np.asarray(ignored) > 0
        labels = labels & ~ignored
    valid = labels.any(axis=0)
    if not valid.any():
        raise ValueError("No class has a positive example: metrics are undefined")
    # an ignored pair scored below every other image ranks after all positives: no effect on AP
    ap = average_precision_per_class(
        ranking if ignored is None else np.where(ignored, -np.inf, ranking), labels
    )
    results = {"mAP": 100 * float(np.mean(ap[valid]))}
    for name, value in _precision_recall_f1(scores >= threshold, labels, valid).items():
        results[name] = 100 * float(value)
    k = min(top_k, scores.shape[1])
    top = np.zeros_like(labels)
    np.put_along_axis(top, np.argpartition(-ranking, k - 1, axis=1)[:, :k], True, axis=1)
    top &= scores >= threshold
    for name, value in _precision_recall_f1(top, labels, valid).items():
        results[f"{name}_top{top_k}"] = 100 * float(value)
    results["AP"] = 100 * ap
    results["num_excluded_classes"] = int((~valid).sum())
    return results


def bootstrap_map(ranking_scores, labels, classes, resamples=1000, seed=0):
    """mAP (percent) of each model on the test images and on ``resamples`` bootstrap resamples
    of them, the same resamples for every model (so differences are paired): ``ranking_scores``
    a list of [N, K] arrays (one per model) against binary ``labels`` [N, K]; mAP over the
    ``classes`` (indices) that have a positive in the images drawn. Returns (mAPs [models],
    resampled mAPs [models, resamples])."""
    labels = np.asarray(labels)[:, classes] > 0
    scores = [np.asarray(s)[:, classes] for s in ranking_scores]

    def maps(images):
        present = labels[images].any(axis=0)
        aps = [average_precision_per_class(s[images], labels[images])[present] for s in scores]
        return [100 * float(np.mean(ap)) for ap in aps]

    draws = np.random.default_rng(seed).integers(0, len(labels), size=(resamples, len(labels)))
    resampled = np.array([maps(images) for images in draws]).reshape(resamples, len(scores))
    return np.array(maps(np.arange(len(labels)))), resampled.T


def chance_map(labels, draws=20, seed=0):
    """The mAP (percent) of random scores on binary ``labels`` [N, K]: the mean over ``draws``
    uniform random scorings (what a model that learnt nothing scores, a class's prevalence or
    more on few images)."""
    labels = np.asarray(labels) > 0
    present = labels.any(axis=0)
    rng = np.random.default_rng(seed)
    maps = [
        np.mean(average_precision_per_class(rng.random(labels.shape), labels)[present])
        for _ in range(draws)
    ]
    return 100 * float(np.mean(maps))


class MultiLabelEvaluator(DatasetEvaluator):
    """Evaluate ``{"image_scores": Tensor[K]}`` outputs against the inputs' ``multi_labels``;
    AP ranks the outputs' ``image_logits`` where they have them (the student's).

    Results: ``{"multilabel": {"mAP", "CP", ..., "OF1_top3", "AP-<class>", ...}}`` in percent,
    gathered from all ranks. Per-image scores are saved to ``output_dir`` when given.
    """

    def __init__(
        self,
        dataset_name,
        distributed=True,
        output_dir=None,
        score_threshold=0.5,
        top_k=3,
    ):
        self._class_names = thing_classes_of(dataset_name)
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._threshold = score_threshold
        self._top_k = top_k

    def reset(self) -> None:
        self._image_ids, self._scores, self._labels, self._ignored = [], [], [], []
        self._ranking = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            self._image_ids.append(inp["image_id"])
            self._scores.append(out["image_scores"].detach().float().cpu().numpy())
            ranking = out.get("image_logits", out["image_scores"])
            self._ranking.append(ranking.detach().float().cpu().numpy())
            self._labels.append(inp["multi_labels"].numpy())
            ignored = inp.get("ignored_labels")
            self._ignored.append(
                np.zeros_like(self._labels[-1]) if ignored is None else ignored.numpy()
            )

    def evaluate(self) -> dict | None:
        columns = (self._image_ids, self._scores, self._ranking, self._labels, self._ignored)
        if self._distributed:
            comm.synchronize()
            gathered = [comm.gather(x, dst=0) for x in columns]
            if not comm.is_main_process():
                return {}
            columns = [list(itertools.chain(*g)) for g in gathered]
        image_ids, scores, ranking, labels, ignored = columns
        if not scores:
            logger.warning(f"[MultiLabelEvaluator] No predictions for {self._dataset_name}")
            return {}
        scores, ranking, labels, ignored = (np.stack(x) for x in (scores, ranking, labels, ignored))
        self._check_scores(scores)
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(
                os.path.join(self._output_dir, "multilabel_scores.npz"), "wb"
            ) as f:
                np.savez_compressed(
                    f,
                    image_ids=np.asarray(image_ids, dtype=object).astype(str),
                    scores=scores,
                    ranking_scores=ranking,
                    labels=labels,
                    ignored_labels=ignored,
                )
        metrics = compute_multilabel_metrics(
            scores,
            labels,
            self._threshold,
            self._top_k,
            ignored if ignored.any() else None,
            ranking,
        )
        per_class = metrics.pop("AP")
        self._log_per_class(per_class)
        results = dict(metrics)
        results.update(
            {f"AP-{c}": float(a) for c, a in zip(self._class_names, per_class) if np.isfinite(a)}
        )
        return OrderedDict({"multilabel": results})

    def _check_scores(self, scores):
        """A diverged model gives non-finite scores, or one score vector for every image (its
        features saturated): either would still yield a plausible-looking mAP."""
        bad = ~np.isfinite(scores).all(axis=1)
        if bad.any():
            raise FloatingPointError(
                f"[MultiLabelEvaluator] {bad.sum()} of {len(scores)} images of "
                f"{self._dataset_name} got non-finite scores: the weights have diverged "
                f"(check the checkpoint, or train again with a lower SOLVER.BASE_LR)"
            )
        if len(scores) > 1 and (scores == scores[0]).all():
            raise ValueError(
                f"[MultiLabelEvaluator] all {len(scores)} images of {self._dataset_name} got "
                f"the same scores: the model ignores its input (diverged or collapsed weights)"
            )

    def _log_per_class(self, per_class):
        rows = [
            (c, f"{a:.2f}" if np.isfinite(a) else "no positives")
            for c, a in zip(self._class_names, per_class)
        ]
        n_cols = min(6, 2 * len(rows))
        flat = list(itertools.chain(*rows))
        table = tabulate(
            itertools.zip_longest(*[flat[i::n_cols] for i in range(n_cols)]),
            headers=["class", "AP"] * (n_cols // 2),
            tablefmt="pipe",
            stralign="left",
        )
        logger.info(f"Per-class AP on {self._dataset_name}:\n" + table)
