"""CorLoc and detection AP against a hand-worked example; the teacher picture."""

import numpy as np
import pytest
import torch

from wsd_distill.evaluation import corloc, detection_ap
from wsd_distill.modeling.wsddn import region_objectness
from wsd_distill.visualization import draw_teacher_view


def _gt(boxes, classes, difficult=None):
    return (
        np.array(boxes, np.float32),
        np.array(classes),
        np.array(difficult or [False] * len(classes)),
    )


def _pred(boxes, scores, classes):
    return (np.array(boxes, np.float32), np.array(scores), np.array(classes))


GT = {
    1: _gt([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]),
    2: _gt([[0, 0, 10, 10]], [0]),
    3: _gt([[0, 0, 10, 10]], [0], [True]),  # difficult: neither counted nor penalised
}
PRED = {
    1: _pred([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 40, 40]], [0.9, 0.95, 0.5], [0, 0, 1]),
    2: _pred([[1, 1, 10, 10]], [0.8], [0]),  # IoU 0.81
    3: _pred([[0, 0, 10, 10]], [0.99], [0]),
}


def test_corloc_by_hand():
    # class 0: image 1's top box is the wrong one, image 2's is right (image 3 counts for CorLoc
    # too: right)
    np.testing.assert_allclose(corloc(PRED, GT, 3), [2 / 3, 1.0, np.nan])


def test_detection_ap_by_hand():
    # class 0, ranked: 0.99 difficult (ignored), 0.95 FP, 0.9 TP, 0.8 TP; 2 positives
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> interpolated AP = 2/3
    np.testing.assert_allclose(detection_ap(PRED, GT, 3), [2 / 3, 1.0, np.nan])
    # a second hit on an already matched box is a false positive: image 1's duplicate at 0.85
    # ranks before image 2's hit: 0.95 FP, 0.9 TP, 0.85 FP, 0.8 TP -> precision 1/2 at recall
    # 1/2 and 1 -> AP 1/2 (2/3 if the duplicate were ignored, more if it counted as a hit)
    boxes, scores, classes = PRED[1]
    duplicate = {**PRED, 1: _pred([*boxes, [1, 1, 10, 10]], [*scores, 0.85], [*classes, 0])}
    assert detection_ap(duplicate, GT, 3)[0] == pytest.approx(1 / 2)


def test_teacher_picture():
    image = np.full((60, 90, 3), 127, np.uint8)
    boxes = np.array([[5, 5, 30, 30], [40, 10, 80, 50], [0, 0, 90, 60]], np.float32)
    scores = region_objectness(torch.tensor([[0.1, 0.3], [0.5, 0.0], [0.05, 0.05]])).numpy()
    np.testing.assert_allclose(scores, [0.3, 0.5, 0.05])
    out = draw_teacher_view(
        image,
        boxes,
        scores,
        np.array([0.9, 0.2, 0.6]),
        ["a", "b", "c"],
        np.array([1, 0, 0]),
        num_proposals=2,
    )
    assert out.dtype == np.uint8 and out.shape[2] == 3 and out.shape[0] >= 60
    assert (out != 127).any(axis=2).mean() > 0.01  # something was drawn
