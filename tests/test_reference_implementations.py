"""The metrics and losses against the code users compare with, on random and hand-made inputs:
ML-GCN's AveragePrecisionMeter and F1s, ASL's mAP and AsymmetricLoss, sklearn, pcl.pytorch's
mil_losses, OICR pseudo labels and CorLoc, detectron2's voc_eval conventions. The reference
functions below are transcribed from those repositories (the file and function named in each
docstring)."""

import math

import numpy as np
import pytest
import torch
from detectron2.evaluation.pascal_voc_evaluation import voc_ap
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, pairwise_iou
from sklearn.metrics import average_precision_score

from wsd_distill.evaluation import compute_multilabel_metrics, corloc, detection_ap
from wsd_distill.modeling.label_losses import label_loss
from wsd_distill.modeling.wsddn import (
    class_top_regions,
    wsddn_log_image_scores,
    wsddn_scores,
)

from conftest import make_input, tiny_cfg


def ml_gcn_average_precision(output, target):
    """ML-GCN util.py, ``AveragePrecisionMeter.average_precision`` (difficult_examples=True:
    target 0 is difficult, -1 negative)."""
    pos_count = total_count = precision_at_i = 0.0
    for i in np.argsort(-output, kind="stable"):
        if target[i] == 0:
            continue
        pos_count += target[i] == 1
        total_count += 1
        if target[i] == 1:
            precision_at_i += pos_count / total_count
    return precision_at_i / pos_count


def ml_gcn_evaluation(scores, targets):
    """ML-GCN util.py, ``AveragePrecisionMeter.evaluation``: scores >= 0 are predictions
    (logits); returns OP, OR, OF1, CP, CR, CF1."""
    n_class = scores.shape[1]
    targets = np.where(targets == -1, 0, targets)
    Nc, Np, Ng = np.zeros(n_class), np.zeros(n_class), np.zeros(n_class)
    for k in range(n_class):
        Ng[k] = np.sum(targets[:, k] == 1)
        Np[k] = np.sum(scores[:, k] >= 0)
        Nc[k] = np.sum(targets[:, k] * (scores[:, k] >= 0))
    Np[Np == 0] = 1
    OP, OR = np.sum(Nc) / np.sum(Np), np.sum(Nc) / np.sum(Ng)
    CP, CR = np.sum(Nc / Np) / n_class, np.sum(Nc / Ng) / n_class
    return OP, OR, 2 * OP * OR / (OP + OR), CP, CR, 2 * CP * CR / (CP + CR)


def ml_gcn_overall_topk(logits, targets, k):
    """ML-GCN util.py, ``AveragePrecisionMeter.overall_topk``."""
    scores = np.full(logits.shape, -1.0)
    for i, row in enumerate(np.argsort(-logits, axis=1)[:, :k]):
        for j in row:
            scores[i, j] = 1 if logits[i, j] >= 0 else -1
    return ml_gcn_evaluation(scores, targets)


def asl_average_precision(output, target):
    """ASL src/helper_functions/helper_functions.py, ``average_precision``."""
    indices = output.argsort()[::-1]
    total_count = np.cumsum(np.ones(len(output)))
    sorted_target = target[indices] == 1
    pos_count = np.cumsum(sorted_target).astype(float)
    total = pos_count[-1]
    pos_count[~sorted_target] = 0
    return np.sum(pos_count / total_count) / (total + 1e-8)


class ASLAsymmetricLoss(torch.nn.Module):
    """Alibaba-MIIL/ASL src/loss_functions/losses.py, ``AsymmetricLoss``, transcribed."""

    def __init__(self, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8, disable_grad=True):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip
        self.disable_torch_grad_focal_loss, self.eps = disable_grad, eps  # (name shortened)

    def forward(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(False)
            pt0 = xs_pos * y
            pt1 = xs_neg * (1 - y)
            pt = pt0 + pt1
            one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(True)
            loss *= one_sided_w
        return -loss.sum()


def pcl_mil_losses(cls_score, labels):
    """pcl.pytorch lib/modeling/pcl_heads.py, ``mil_losses``."""
    cls_score = cls_score.clamp(1e-6, 1 - 1e-6)
    loss = -labels * torch.log(cls_score) - (1 - labels) * torch.log(1 - cls_score)
    return loss.mean()


def _random_set(seed, n=300, k=10):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 3  # continuous: no ties
    labels = rng.random((n, k)) < 0.2
    labels[:2] = True  # every class has a positive
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_map_and_f1_equal_ml_gcn_asl_and_sklearn(seed):
    logits, labels = _random_set(seed)
    probs = 1 / (1 + np.exp(-logits))
    m = compute_multilabel_metrics(probs, labels, threshold=0.5, top_k=3)
    targets = np.where(labels, 1, -1)
    for k in range(labels.shape[1]):
        ap = m["AP"][k] / 100
        assert ap == pytest.approx(ml_gcn_average_precision(logits[:, k], targets[:, k]))
        assert ap == pytest.approx(asl_average_precision(probs[:, k], labels[:, k]))
        assert ap == pytest.approx(average_precision_score(labels[:, k], probs[:, k]))
    names = ("OP", "OR", "OF1", "CP", "CR", "CF1")
    assert [m[n] / 100 for n in names] == pytest.approx(ml_gcn_evaluation(logits, targets))
    top3 = ml_gcn_overall_topk(logits, targets, 3)
    assert [m[f"{n}_top3"] / 100 for n in names] == pytest.approx(top3)


def test_difficult_pairs_as_ml_gcn():
    """ML-GCN's target 0 (VOC difficult) is left out of AP: our ``ignored``."""
    logits, labels = _random_set(2, n=200, k=4)
    difficult = np.random.default_rng(3).random(labels.shape) < 0.1
    difficult[:2] = False
    targets = np.where(difficult, 0, np.where(labels, 1, -1))
    m = compute_multilabel_metrics(logits, labels & ~difficult, ignored=difficult)
    for k in range(4):
        expected = ml_gcn_average_precision(logits[:, k], targets[:, k])
        assert m["AP"][k] / 100 == pytest.approx(expected)


def test_saturated_sigmoids_are_ranked_by_their_logits():
    """float32 sigmoid is exactly 1.0 above a logit of ~17: ranking those ties costs AP, the
    logits (what ML-GCN ranks) do not."""
    logits = np.array([[30.0], [25.0], [20.0], [18.0]], np.float32)
    labels = np.array([[0], [1], [1], [1]])
    probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
    assert (probs == 1.0).all()
    on_probs = compute_multilabel_metrics(probs, labels)["mAP"]
    ranked = compute_multilabel_metrics(probs, labels, ranking_scores=logits)
    assert on_probs == pytest.approx(75.0)  # one tie group: precision 3/4 for every positive
    assert ranked["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert ranked["OP"] == pytest.approx(75.0)  # thresholds stay on the probabilities


def test_loss_wsddn_is_num_classes_times_pcl_mil_losses():
    """loss_wsddn sums the BCE over classes and averages over images; pcl.pytorch averages over
    both, so its learning rates do not carry over as they are."""
    cfg = tiny_cfg(num_classes=5)
    cfg.MODEL.ROI_BOX_HEAD.DROPOUT = 0.0  # the two passes below see the same network
    model = build_model(cfg)
    model.train()
    inputs = [make_input(7, seed=0), make_input(9, labels=(0,), seed=1)]
    loss = model(inputs)["loss_wsddn"]
    with torch.no_grad():
        out = model.teacher_outputs(inputs)
    labels = torch.stack([x["multi_labels"] for x in inputs])
    reference = pcl_mil_losses(out["image_scores"], labels)
    assert loss.item() == pytest.approx(5 * reference.item(), rel=1e-5)


def pcl_bbox_overlaps(boxes, query_boxes):
    """pcl.pytorch lib/utils/boxes.py ``bbox_overlaps`` (its cython_bbox): widths + 1."""
    overlaps = np.zeros((len(boxes), len(query_boxes)), np.float32)
    for k, q in enumerate(query_boxes):
        box_area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        for n, b in enumerate(boxes):
            iw = min(b[2], q[2]) - max(b[0], q[0]) + 1
            if iw > 0:
                ih = min(b[3], q[3]) - max(b[1], q[1]) + 1
                if ih > 0:
                    ua = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + box_area - iw * ih
                    overlaps[n, k] = iw * ih / ua
    return overlaps


def oicr_refine_loss(
    boxes, cls_prob, im_labels, prob, bg_thresh=0.0, fg_thresh=0.5, plus_one=False
):
    """pcl.pytorch lib/model/pcl/pcl.py, ``_get_highest_score_proposals`` +
    ``get_proposal_clusters`` + ``OICRLosses`` (one image; its IoU, with the +1 of its
    box_utils with ``plus_one``, else as detectron2's boxes)."""
    cls_prob = cls_prob.copy()
    gt_boxes, gt_classes, gt_scores = [], [], []
    for i in np.flatnonzero(im_labels):
        max_index = np.argmax(cls_prob[:, i])
        gt_boxes.append(boxes[max_index])
        gt_classes.append(i + 1)
        gt_scores.append(cls_prob[max_index, i])
        cls_prob[max_index, :] = 0
    if plus_one:
        overlaps = pcl_bbox_overlaps(boxes, np.array(gt_boxes))
    else:
        overlaps = pairwise_iou(Boxes(torch.tensor(boxes)), Boxes(torch.tensor(np.array(gt_boxes))))
        overlaps = overlaps.numpy()
    assignment, max_overlaps = overlaps.argmax(axis=1), overlaps.max(axis=1)
    labels = np.array(gt_classes)[assignment]
    weights = np.array(gt_scores)[assignment]
    weights[max_overlaps < bg_thresh] = 0
    labels[max_overlaps < fg_thresh] = 0
    loss = -weights * np.log(prob[np.arange(len(prob)), labels] + 1e-6)
    return labels, weights, loss.mean()


def _refine_case(extra_boxes=(), extra_scores=()):
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], *extra_boxes], np.float32)
    previous = np.array([[0.6, 0.5], [0.3, 0.1], [0.1, 0.4], *extra_scores], np.float32)
    proposals = Instances((100, 100))
    proposals.proposal_boxes = Boxes(torch.tensor(boxes))
    return boxes, previous, proposals


def test_oicr_gives_each_class_its_own_top_region():
    """Both classes' top region is region 0: OICR gives it to class 0 and class 1 takes region 2
    (targets [1, 1, 2], weights [.6, .6, .4]), where sharing it left class 1 without one."""
    boxes, previous, proposals = _refine_case()
    probs = np.full((3, 3), 1 / 3, np.float32)
    labels, weights, reference = oicr_refine_loss(boxes, previous, np.array([1, 1]), probs)
    assert labels.tolist() == [1, 1, 2] and weights == pytest.approx([0.6, 0.6, 0.4])
    assert reference == pytest.approx((0.6 + 0.6 + 0.4) / 3 * math.log(3), abs=1e-5)
    model = build_model(tiny_cfg(num_classes=2, refine_iters=1))
    loss = model.refine_loss(
        torch.tensor(probs), torch.tensor(previous), [proposals], torch.tensor([[1.0, 1.0]])
    )
    assert loss.item() == pytest.approx(0.5859, abs=1e-4)
    assert loss.item() == pytest.approx(reference, abs=1e-5)


def test_oicr_background_threshold_and_first_branch_weight():
    """pcl.pytorch's BG_THRESH 0.1: a region overlapping no pseudo box by 0.1 gets weight 0;
    its first refinement's loss counts 3 times (REFINE_FIRST_LOSS_WEIGHT)."""
    boxes, previous, proposals = _refine_case([[80, 80, 90, 90]], [[0.0, 0.0]])
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=4).astype(np.float32)
    _, weights, reference = oicr_refine_loss(boxes, previous, np.array([1, 1]), probs, 0.1)
    assert weights[3] == 0
    cfg = tiny_cfg(num_classes=2, refine_iters=2)
    cfg.MODEL.WSDDN.REFINE_BG_IOU = 0.1
    cfg.MODEL.WSDDN.REFINE_FIRST_LOSS_WEIGHT = 3.0
    model = build_model(cfg)
    loss = model.refine_loss(
        torch.tensor(probs), torch.tensor(previous), [proposals], torch.tensor([[1.0, 1.0]])
    )
    assert loss.item() == pytest.approx(reference, abs=1e-5)
    model.train()
    inputs = [make_input(6, seed=0)]
    inputs[0]["multi_labels"] = torch.tensor([1.0, 0.0])
    torch.manual_seed(0)
    weighted = model(inputs)
    model.refine_first_weight = 1.0
    torch.manual_seed(0)
    plain = model(inputs)
    assert weighted["loss_refine_0"].item() == pytest.approx(3 * plain["loss_refine_0"].item())
    assert weighted["loss_refine_1"].item() == pytest.approx(plain["loss_refine_1"].item())


def test_oicr_iou_plus_one_as_pcl_pytorch():
    """MODEL.WSDDN.REFINE_IOU_PLUS_ONE: [0, 0, 10, 4.6] against the pseudo box [0, 0, 10, 10]
    has IoU 0.46 without, 0.509 with the +1 (background, then foreground at 0.5), and the loss
    equals pcl.pytorch's with its bbox_overlaps."""
    from wsd_distill.modeling.wsddn import pairwise_iou_plus_one

    a, b = Boxes(torch.tensor([[0.0, 0, 10, 4.6]])), Boxes(torch.tensor([[0.0, 0, 10, 10]]))
    assert pairwise_iou(a, b).item() == pytest.approx(0.46)
    assert pairwise_iou_plus_one(a, b).item() == pytest.approx(0.509, abs=1e-3)
    boxes, previous, proposals = _refine_case([[0, 0, 10, 4.6]], [[0.0, 0.0]])
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=4).astype(np.float32)
    labels, _, reference = oicr_refine_loss(boxes, previous, np.array([1, 1]), probs, plus_one=True)
    assert labels[3] == 1  # foreground with the +1
    cfg = tiny_cfg(num_classes=2, refine_iters=1)
    cfg.MODEL.WSDDN.REFINE_IOU_PLUS_ONE = True
    loss = build_model(cfg).refine_loss(
        torch.tensor(probs), torch.tensor(previous), [proposals], torch.tensor([[1.0, 1.0]])
    )
    assert loss.item() == pytest.approx(reference, abs=1e-4)  # (log(p + 1e-6) there)


def test_corloc_takes_each_class_best_region_over_all_proposals():
    """10 disjoint boxes, 20 classes; every region scores 0.05 for each class, except the
    present class 3 whose best region (the right one) scores 5e-5: after the detection
    threshold (1e-4) and NMS class 3 has no box (CorLoc 0), pcl.pytorch's argmax over all
    proposals finds it (CorLoc 1)."""
    boxes = Boxes(torch.tensor([[20.0 * i, 0, 20 * i + 10, 10] for i in range(10)]))
    region_scores = torch.full((10, 20), 0.05)
    region_scores[:, 3] = 1e-5
    region_scores[7, 3] = 5e-5
    gt = {0: (boxes.tensor[7:8].numpy(), np.array([3]), np.array([False]))}
    model = build_model(tiny_cfg(num_classes=20))
    detections = model.detect(boxes, region_scores, (20, 200))
    as_arrays = (
        detections.pred_boxes.tensor.numpy(),
        detections.scores.numpy(),
        detections.pred_classes.numpy(),
    )
    assert corloc({0: as_arrays}, gt, 20)[3] == 0.0
    top = class_top_regions(boxes, region_scores, (20, 200))
    top_arrays = (top.pred_boxes.tensor.numpy(), top.scores.numpy(), top.pred_classes.numpy())
    assert corloc({0: top_arrays}, gt, 20)[3] == 1.0


def test_iou_exactly_at_the_threshold():
    """A box of IoU exactly 0.5: a hit when inclusive (VOC devkit, WSDDN), a miss without
    (detectron2's voc_eval, pcl.pytorch's dis_eval: ovmax > 0.5)."""
    gt = {0: (np.array([[0, 0, 10, 10]], np.float32), np.array([0]), np.array([False]))}
    pred = {0: (np.array([[0, 0, 10, 20]], np.float32), np.array([0.9]), np.array([0]))}
    assert corloc(pred, gt, 1, 0.5, inclusive=True)[0] == 1.0
    assert corloc(pred, gt, 1, 0.5, inclusive=False)[0] == 0.0
    assert detection_ap(pred, gt, 1, inclusive=True)[0] == 1.0
    assert detection_ap(pred, gt, 1, inclusive=False)[0] == 0.0


def test_voc07_eleven_point_and_all_point_ap():
    """Two positives; ranked hit, miss, hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    All-point: 1/2 * 1 + 1/2 * 2/3 = 5/6; 11-point: (6 * 1 + 5 * 2/3) / 11 = 28/33."""
    gt = {
        0: (np.array([[0, 0, 10, 10]], np.float32), np.array([0]), np.array([False])),
        1: (np.array([[0, 0, 10, 10]], np.float32), np.array([0]), np.array([False])),
    }
    pred = {
        0: (
            np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32),
            np.array([0.9, 0.8]),
            np.array([0, 0]),
        ),
        1: (np.array([[0, 0, 10, 10]], np.float32), np.array([0.7]), np.array([0])),
    }
    assert detection_ap(pred, gt, 1)[0] == pytest.approx(5 / 6)
    assert detection_ap(pred, gt, 1, use_07_metric=True)[0] == pytest.approx(28 / 33)
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec, True) == pytest.approx(28 / 33)


def test_teacher_scores_are_wsddn_formula():
    """WSDDN image scores identical to the formula as pcl.pytorch and wetectron write it:
    softmax over classes times softmax over each image's regions, summed over regions."""
    g = torch.Generator().manual_seed(0)
    cls_logits, det_logits = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    _, image = wsddn_scores(cls_logits, det_logits, [4, 5], eps=1e-10)
    for i, (a, b) in enumerate(((0, 4), (4, 9))):
        expected = (cls_logits[a:b].softmax(1) * det_logits[a:b].softmax(0)).sum(0)
        torch.testing.assert_close(image[i], expected)


def test_teacher_ranks_its_unclamped_image_scores():
    """The teacher's mAP ranks the logits of its unclamped image scores, in log space: equal to
    the formula's log y and log(1 - y), and apart where the clamped scores tie (class margins
    15 and 20 both give 0.99999899 clamped)."""
    g = torch.Generator().manual_seed(0)
    cls_logits, det_logits = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    log_y, log_not_y = wsddn_log_image_scores(cls_logits, det_logits, [4, 5])
    _, image = wsddn_scores(cls_logits, det_logits, [4, 5], eps=1e-10)
    torch.testing.assert_close(log_y.exp(), image)
    torch.testing.assert_close(log_not_y.exp(), 1 - image)
    logits, clamped = [], []
    for margin in (15.0, 20.0):
        cls, det = torch.tensor([[margin, 0.0]]), torch.zeros(1, 2)  # one region
        log_y, log_not_y = wsddn_log_image_scores(cls, det, [1])
        logits.append((log_y - log_not_y)[0, 0].item())
        clamped.append(wsddn_scores(cls, det, [1], eps=1e-6)[1][0, 0].item())
    assert clamped[0] == clamped[1] and logits == pytest.approx([15.0, 20.0])
    # the evaluation ranks them: the model's inference gives them as image_logits
    model = build_model(tiny_cfg()).eval()
    with torch.no_grad():
        (out,) = model([make_input(6, seed=0)])
    torch.testing.assert_close(torch.sigmoid(out["image_logits"]), out["image_scores"])


def test_asl_equals_the_references_coco_training():
    """MODEL.STUDENT.LABEL_LOSS "asl" is the reference's train.py criterion,
    AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05, disable_torch_grad_focal_loss=True),
    divided by the batch size: values and gradients (logits within the reference's log clamp)."""
    reference = ASLAsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05)
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(8, 20, generator=g, dtype=torch.float64) * 4).requires_grad_()
    labels = (torch.rand(8, 20, generator=g) < 0.2).double()
    ours = label_loss(logits, labels, "asl")
    theirs = reference(logits, labels) / len(labels)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(
        torch.autograd.grad(ours, logits)[0], torch.autograd.grad(theirs, logits)[0]
    )
