"""compute_multilabel_metrics against a hand computation and sklearn; MultiLabelEvaluator."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from wsd_distill.evaluation import MultiLabelEvaluator, compute_multilabel_metrics
from wsd_distill.evaluation.multilabel import bootstrap_map, chance_map

# 4 images, 2 classes (worked out by hand in the test below)
SCORES = np.array([[0.9, 0.2], [0.8, 0.6], [0.3, 0.7], [0.1, 0.4]])
LABELS = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])


def test_hand_computed_example():
    m = compute_multilabel_metrics(SCORES, LABELS, threshold=0.5, top_k=1)
    # class 0 ranking: +, -, + -> AP = (1/1 + 2/3) / 2; class 1 ranking: -, + -> AP = 1/2
    np.testing.assert_allclose(m["AP"], [100 * 5 / 6, 50.0])
    assert m["mAP"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2)
    # >= 0.5: class 0 predicts images 0, 1 (1 right of 2 GT); class 1 predicts 1, 2 (1 right of 1
    # GT)
    assert (m["CP"], m["CR"]) == pytest.approx((50.0, 75.0))
    assert m["CF1"] == pytest.approx(60.0)
    assert (m["OP"], m["OR"]) == pytest.approx((50.0, 100 * 2 / 3))
    assert m["OF1"] == pytest.approx(100 * 4 / 7)
    assert m["num_excluded_classes"] == 0


def test_top_k_above_threshold_as_ml_gcn():
    """ML-GCN's top-k keeps the best label of image 3 (0.4) out, being under 0.5: predicted are
    class 0 on images 0, 1 (1 right of 2 GT) and class 1 on image 2 (0 right of 1 GT)."""
    m = compute_multilabel_metrics(SCORES, LABELS, threshold=0.5, top_k=1)
    assert (m["CP_top1"], m["CR_top1"]) == pytest.approx((25.0, 25.0))
    assert (m["OP_top1"], m["OR_top1"], m["OF1_top1"]) == pytest.approx((100 / 3, 100 / 3, 100 / 3))


def test_ap_equals_sklearn_with_ties_and_excludes_empty_classes():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((500, 12)), 1)  # many ties
    labels = rng.random((500, 12)) < 0.15
    labels[:, 5] = False  # no positive: excluded
    m = compute_multilabel_metrics(scores, labels)
    expected = [average_precision_score(labels[:, k], scores[:, k]) for k in range(12) if k != 5]
    np.testing.assert_allclose(np.delete(m["AP"], 5), 100 * np.array(expected), rtol=1e-12)
    assert np.isnan(m["AP"][5]) and m["num_excluded_classes"] == 1
    assert m["mAP"] == pytest.approx(100 * np.mean(expected))
    assert set(m) >= {f"{k}_top3" for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}


def test_perfect_and_inverted_rankings():
    labels = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    assert compute_multilabel_metrics(labels * 0.8 + 0.1, labels)["mAP"] == pytest.approx(100.0)
    assert compute_multilabel_metrics(1 - labels, labels)["mAP"] < 50
    with pytest.raises(ValueError, match="must all be"):
        compute_multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def test_evaluator_reports_detectron2_results(datasets_dir):
    evaluator = MultiLabelEvaluator("tiny_shapes_val", distributed=True)
    evaluator.reset()
    labels = np.zeros((4, 12))
    labels[[0, 1, 2, 3], [0, 0, 3, 7]] = 1
    scores = labels * 0.6 + 0.2
    for i in range(0, 4, 2):
        inputs = [{"image_id": j, "multi_labels": torch.tensor(labels[j])} for j in (i, i + 1)]
        evaluator.process(inputs, [{"image_scores": torch.tensor(scores[j])} for j in (i, i + 1)])
    results = evaluator.evaluate()["multilabel"]
    assert results["mAP"] == pytest.approx(100.0) and results["num_excluded_classes"] == 9
    assert results["AP-circle"] == pytest.approx(100.0) and "AP-triangle" not in results
    assert results["OF1"] == pytest.approx(100.0)


def test_ignored_pairs_are_left_out_of_ap_and_count_as_negatives_in_f1(datasets_dir):
    """VOC's difficult-only classes: positives at ranks 1, 2 (ignored) and 4 of one class."""
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    labels = np.array([[1], [1], [0], [1]])
    ignored = np.array([[0], [1], [0], [0]])
    assert compute_multilabel_metrics(scores, labels)["mAP"] == pytest.approx(100 * 11 / 12)
    kept = compute_multilabel_metrics(scores, labels, ignored=ignored)
    assert kept["mAP"] == pytest.approx(100 * (1 + 2 / 3) / 2)  # ranks 1 and 3 of 3
    # scored >= 0.5: all four predicted, two of them right (the ignored one is a negative)
    assert kept["OP"] == pytest.approx(50.0) and kept["OR"] == pytest.approx(100.0)
    evaluator = MultiLabelEvaluator("tiny_shapes_val", distributed=False)
    evaluator.reset()
    for i in range(4):
        row = np.zeros((3, 12))
        row[:, 0] = scores[i, 0], labels[i, 0], ignored[i, 0]
        evaluator.process(
            [
                {
                    "image_id": i,
                    "multi_labels": torch.tensor(row[1]),
                    "ignored_labels": torch.tensor(row[2]),
                }
            ],
            [{"image_scores": torch.tensor(row[0])}],
        )
    assert evaluator.evaluate()["multilabel"]["mAP"] == pytest.approx(kept["mAP"])


def test_bootstrap_map_is_paired_and_hand_checkable():
    """The full-set mAP is the evaluator's; resamples draw images with replacement, the same
    for every model: a model against itself gains exactly 0 on every resample, a perfect
    ranking scores 100 on all of them, and a class absent from a resample is left out."""
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    perfect = labels + 0.1 * np.arange(4)[:, None]
    noisy = np.array([[0.2, 0.9], [0.8, 0.1], [0.6, 0.3], [0.1, 0.5]])
    point, resampled = bootstrap_map([perfect, noisy, noisy], labels, [0, 1], resamples=200)
    assert point[0] == 100 and resampled.shape == (3, 200) and (resampled[0] == 100).all()
    expected = compute_multilabel_metrics(noisy, labels)["mAP"]
    assert point[1] == pytest.approx(expected)
    assert point[1] == pytest.approx(100 * ((1 / 2 + 2 / 3) / 2 + 1 / 4) / 2)  # APs 7/12, 1/4
    assert (resampled[1] == resampled[2]).all() and resampled[1].std() > 0
    only_first = bootstrap_map([noisy], labels, [0], resamples=5)[0]
    assert only_first[0] == pytest.approx(100 * 7 / 12)


def test_chance_map_is_the_mean_of_random_scorings():
    """One positive in N images: a random ranking's expected AP is H_N / N (1/r at rank r, r
    uniform); with every image positive, 100."""
    n = 50
    labels = np.zeros((n, 2), int)
    labels[0, 0], labels[:, 1] = 1, 1
    expected = 100 * (sum(1 / r for r in range(1, n + 1)) / n + 1) / 2
    assert chance_map(labels, draws=4000) == pytest.approx(expected, abs=1.0)
