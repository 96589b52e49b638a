"""Distillation: the losses by hand, the student's own head on the teacher's RoIs, the teacher's
one format, the stages, gradients, bad teachers."""

import math
import os
import subprocess
import sys

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from wsd_distill import check_config
from wsd_distill.data.teacher_cache import teacher_cache_settings
from wsd_distill.data.teacher_targets import TARGET_FIELDS
from wsd_distill.engine import TeacherHook, setup_cfg
from wsd_distill.modeling import (
    box_average_pool,
    build_teacher,
    prediction_distill_loss,
    roi_feature_distill_loss,
    teacher_targets,
    wsddn_scores,
    wsddn_soft_scores,
)
from wsd_distill.modeling.box_head import box_head_width
from wsd_distill.modeling.teacher import get_teacher_cfg
from wsd_distill.modeling.wsddn import WSDDN

from conftest import ROOT, make_input, tiny_cfg, tiny_student_cfg

L2, L3 = math.log(2), math.log(3)


def test_soft_scores_by_hand():
    """Two images (3 and 2 regions), 2 classes, t_c = t_d = 0.5: the logits are doubled."""
    cls_logits = torch.tensor([[0, L3 / 2], [0, 0], [L3 / 2, 0], [0, 0], [0, 0]])
    det_logits = torch.tensor([[0, 0], [L2 / 2, 0], [L3 / 2, 0], [0, 0], [L3 / 2, 0]])
    soft = wsddn_soft_scores(cls_logits, det_logits, [3, 2], t_c=0.5, t_d=0.5)
    # same numbers as test_wsddn's hand computation once the logits are divided by 0.5
    torch.testing.assert_close(soft, torch.tensor([[7 / 12, 1 / 2], [1 / 2, 1 / 2]]))
    with_t1 = wsddn_soft_scores(cls_logits, det_logits, [3, 2], t_c=1.0, t_d=1.0)
    assert not torch.allclose(with_t1, soft)


def test_prediction_loss_by_hand():
    z = torch.tensor([[5.0, -10.0], [0.0, 2.5]], requires_grad=True)
    p = torch.tensor([[0.8, 0.3], [0.5, 0.9]])
    loss = prediction_distill_loss(z, p, inverse_temperature=1 / 5.0)

    def bce(logit, target):
        s = 1 / (1 + math.exp(-logit / 5.0))
        return -(target * math.log(s) + (1 - target) * math.log(1 - s))

    # summed over classes, averaged over images
    expected = (bce(5, 0.8) + bce(-10, 0.3) + bce(0, 0.5) + bce(2.5, 0.9)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/dz of BCE(sigmoid(z/t), p) is (sigmoid(z/t) - p) / t, divided by B = 2
    assert z.grad[0, 0].item() == pytest.approx((1 / (1 + math.exp(-1)) - 0.8) / 5 / 2, rel=1e-5)


def test_softmax_prediction_loss_by_hand_and_blind_to_a_shift_per_image():
    """One image, 2 classes, p'_T = (0.2, 0.6) -> q_T = (1/4, 3/4); z = (0, ln 3) at t = 2:
    softmax(z / 2) = (1, sqrt 3) / (1 + sqrt 3), the loss 4 KL(q_T || softmax(z / 2))."""
    z = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    p = torch.tensor([[0.2, 0.6]])
    loss = prediction_distill_loss(z, p, 1 / 2.0, "softmax")
    s = [1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))]
    expected = 4 * (0.25 * math.log(0.25 / s[0]) + 0.75 * math.log(0.75 / s[1]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert prediction_distill_loss(z * 2, p, 1 / 2.0, "softmax").item() == pytest.approx(
        0, abs=1e-6
    )
    loss.backward()
    # t**2 (softmax(z / t) - q_T) / t per class: it sums to 0, so it moves no level
    torch.testing.assert_close(z.grad, torch.tensor([[2 * (s[0] - 0.25), 2 * (s[1] - 0.75)]]))
    two = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    p = torch.tensor([[0.3, 0.01, 0.2], [0.05, 0.4, 0.1]])
    shifted = two + torch.tensor([[4.0], [-7.0]])
    torch.testing.assert_close(
        prediction_distill_loss(two, p, 0.2, "softmax"),
        prediction_distill_loss(shifted, p, 0.2, "softmax"),
    )
    assert prediction_distill_loss(two, p, 0.2) != prediction_distill_loss(shifted, p, 0.2)


def test_feature_loss_by_hand():
    teacher = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    student = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = roi_feature_distill_loss(student, teacher)
    assert loss.item() == pytest.approx((1 + 4 + 1 + 1) / (2 * 2))
    per_dim = roi_feature_distill_loss(student, teacher, per_dim=True)
    assert per_dim.item() == pytest.approx((1 + 4 + 1 + 1) / (2 * 2) / 2)
    loss.backward()
    assert teacher.grad is None
    # (f_S - f_T) / N
    torch.testing.assert_close(student.grad, torch.tensor([[-0.5, -1.0], [0.5, 0.5]]))


def annotated_batch(cfg):
    batch = [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
    return TeacherHook(cfg, teacher=build_teacher(cfg)).annotate(batch)


@pytest.mark.parametrize("head", ["fc", "pool"])
def test_feature_loss_trains_the_layers_that_classify_and_never_the_teacher(tiny_teacher, head):
    cfg = tiny_student_cfg(*tiny_teacher, head=head, LABEL_WEIGHT=0.0, PREDICTION_WEIGHT=0.0)
    student = build_model(cfg)
    teacher = build_teacher(cfg)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batch = TeacherHook(cfg, teacher=teacher).annotate(
        [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
    )
    assert [len(x["teacher"]["roi_features"]) for x in batch] == [7, 3]
    maps = []
    student.backbone.register_forward_hook(lambda m, i, out: out["conv3"].retain_grad())
    student.backbone.register_forward_hook(lambda m, i, out: maps.append(out["conv3"]))
    losses = student(batch)
    assert set(losses) == {"loss_kd_feat"}  # stage 1: L_f alone
    losses["loss_kd_feat"].backward()
    assert maps[0].grad.abs().sum() > 0  # the student's last feature map
    used = ["backbone.conv1.0.weight", "backbone.conv3.0.weight"]
    if head == "fc":  # fc6 and fc7, the classifier's input layers
        used += ["head.layers.1.weight", "head.layers.4.weight"]
    else:  # 16-wide pooled RoIs, projected to the teacher's 32
        used += ["feature_projection.weight"]
    for name in used:
        assert student.get_parameter(name).grad.abs().sum() > 0, name
    assert student.classifier.weight.grad is None and not student.classifier.weight.requires_grad
    torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1).step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_feature_loss_by_hand_on_a_non_square_image(tiny_teacher):
    """64 x 80 (H x W) to the 48 x 48 input: x scales by 0.6, y by 0.75. The "pool" head's RoI
    feature is the box average of conv3 (stride 4), compared here with slices of the map."""
    cfg = tiny_student_cfg(*tiny_teacher, head="pool", LABEL_WEIGHT=0.0, PREDICTION_WEIGHT=0.0)
    cfg.MODEL.DISTILL.TEACHER_FEATURE_DIM = 16  # the "pool" head's width: no projection
    student = build_model(cfg)
    assert student.feature_projection is None
    boxes = torch.tensor([[40.0, 16, 80, 32], [0, 0, 80, 64]])  # -> [24, 12, 48, 24], whole
    target = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    x = make_input(1, size=(64, 80))
    x["teacher"] = {
        "proposal_boxes": boxes,
        "proposal_scores": torch.ones(2),
        "roi_features": target,
    }
    maps, pooled_boxes = [], []
    student.backbone.register_forward_hook(lambda m, i, out: maps.append(out["conv3"].detach()))
    original = student.head.forward_rois
    student.head.forward_rois = lambda f, b, s: pooled_boxes.append(b) or original(f, b, s)
    loss = student([x])["loss_kd_feat"]
    torch.testing.assert_close(pooled_boxes[0][0].tensor, boxes * torch.tensor([0.6, 0.75] * 2))
    conv3 = maps[0][0]  # [16, 12, 12]: cells of 4 x 4 input pixels
    f_s = torch.stack([conv3[:, 3:6, 6:12].mean(dim=(1, 2)), conv3.mean(dim=(1, 2))])
    expected = ((target - f_s) ** 2).sum() / (2 * 2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_whole_image_roi_is_what_the_classifier_reads(tiny_teacher):
    """The whole-image RoI pooled is the image pooled, so the head gives the classifier's input:
    exactly for average pooling ("pool", and "fc" on a map whose side is a multiple of P).
    RoI max pooling (Fast R-CNN's, the authors') rounds the box to whole cells plus one, so its
    "fc" bins (4.33 cells here) contain the image's (4 cells): never below them, not equal."""
    feature = torch.randn(2, 16, 12, 12, generator=torch.Generator().manual_seed(1))
    whole = [Boxes(torch.tensor([[0.0, 0, 48, 48]]))] * 2
    for head, pooling in [("pool", "avg"), ("fc", "avg"), ("pool", "max"), ("fc", "max")]:
        cfg = tiny_student_cfg("", "", head=head)
        cfg.MODEL.STUDENT.POOLING = pooling
        cfg.MODEL.DISTILL.ENABLED = False
        student = build_model(cfg).eval()
        image, rois = student.head.pool_image(feature), student.head.pool_rois(feature, whole)
        assert image.shape == rois.shape == (2, 16, *[1 if head == "pool" else 3] * 2)
        if pooling == "avg" or head == "pool":
            torch.testing.assert_close(rois, image, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(
                student.head.forward_rois(feature, whole), student.head(feature)
            )
        else:
            assert (rois >= image).all() and (rois > image).any()


def test_teacher_dropout_draws_the_targets_at_every_step_as_the_authors(tiny_teacher):
    """TEACHER_DROPOUT: only the teacher's dropout layers train (its batch norm keeps its running
    statistics), so two passes over one batch give other RoI features (fc7 after dropout, more
    zeros than in eval mode) and other p'_T, and the same seed the same ones; a teacher cache
    (one draw) is refused, naming the key."""
    cfg = tiny_student_cfg(*tiny_teacher, TEACHER_DROPOUT=True)
    teacher = build_teacher(cfg)
    training = {type(m): m.training for m in teacher.modules()}
    assert training[torch.nn.Dropout] and not training[torch.nn.BatchNorm2d] and not training[WSDDN]
    hooks = {
        "dropout": TeacherHook(cfg, teacher=teacher),
        "eval": TeacherHook(cfg, teacher=build_teacher(tiny_student_cfg(*tiny_teacher))),
    }

    def targets(hook, seed):
        torch.manual_seed(seed)
        batch = [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
        return hooks[hook].annotate(batch)[0]["teacher"]

    a, b, again = targets("dropout", 0), targets("dropout", 1), targets("dropout", 0)
    for field in ("roi_features", "soft_scores"):
        assert not torch.allclose(a[field], b[field]), field
        torch.testing.assert_close(a[field], again[field])
    plain = targets("eval", 0)
    torch.testing.assert_close(plain["roi_features"], targets("eval", 1)["roi_features"])
    zeros = [(t["roi_features"] == 0).float().mean() for t in (plain, a)]
    assert zeros[1] > zeros[0] + 0.1, zeros  # drop7's zeros on top of relu7's (p = 0.3)
    with pytest.raises(ValueError, match="MODEL.DISTILL.TEACHER_DROPOUT .* a teacher cache"):
        teacher_cache_settings(cfg, [])


def test_teacher_targets_one_format_and_top_roi(tiny_teacher):
    """``teacher_targets`` gives every field of the one format; top-1 keeps the region built to
    win (region 2 of image 0, region 0 of image 1, by max_k S_rk)."""
    proposals = []
    for n in (3, 2):
        p = Instances((10, 10))
        p.proposal_boxes = Boxes(torch.arange(4 * n, dtype=torch.float).view(n, 4))
        p.objectness_logits = torch.arange(n, dtype=torch.float) + 1
        proposals.append(p)
    cls_logits = torch.zeros(5, 2)
    det_logits = torch.tensor([[0.0, 0], [1, 0], [5, 0], [4, 0], [0, 1]])
    outputs = {
        "num_regions": [3, 2],
        "proposals": proposals,
        "cls_logits": cls_logits,
        "det_logits": det_logits,
        "roi_features": torch.arange(10, dtype=torch.float).view(5, 2),
        "region_scores": wsddn_scores(cls_logits, det_logits, [3, 2], 1e-6)[0],
    }
    top = teacher_targets(outputs, roi_topk=1)
    assert [set(t) for t in top] == [set(TARGET_FIELDS)] * 2
    torch.testing.assert_close(top[0]["proposal_boxes"], proposals[0].proposal_boxes.tensor[2:3])
    torch.testing.assert_close(top[0]["proposal_scores"], torch.tensor([3.0]))
    torch.testing.assert_close(top[0]["roi_features"], torch.tensor([[4.0, 5.0]]))
    torch.testing.assert_close(top[1]["roi_features"], torch.tensor([[6.0, 7.0]]))
    every = teacher_targets(outputs, cls_temperature=1.0, det_temperature=1.0)
    assert [len(t["roi_features"]) for t in every] == [3, 2]
    soft = wsddn_soft_scores(cls_logits, det_logits, [3, 2], 1.0, 1.0)
    torch.testing.assert_close(torch.stack([t["soft_scores"] for t in every]), soft)


def test_rois_scaled_by_their_proposal_scores(tiny_teacher):
    """The authors' RoI pooling multiplies each pooled RoI by its score, in the teacher and, with
    SCALE_ROI_BY_PROPOSAL_SCORE, on the student's side of L_f: checked against the unscaled
    layers applied to the pooled features times the score."""
    teacher_cfg = tiny_cfg()
    teacher_cfg.MODEL.WSDDN.SCALE_ROI_BY_PROPOSAL_SCORE = True
    torch.manual_seed(0)
    teacher = build_model(teacher_cfg).eval()
    x = make_input(4, seed=2)
    x["proposals"].objectness_logits = torch.tensor([0.5, 2.0, 0.0, 1.0])
    with torch.no_grad():
        scaled = teacher.teacher_outputs([x])["roi_features"]
        feature = teacher.backbone(teacher.preprocess_image([x]).tensor)["conv3"]
        pooled = teacher.pooler([feature], [x["proposals"].proposal_boxes])
        expected = teacher.box_head(pooled * torch.tensor([0.5, 2.0, 0.0, 1.0]).view(4, 1, 1, 1))
    torch.testing.assert_close(scaled, expected)
    assert not torch.allclose(scaled[1], teacher.box_head(pooled)[1])

    cfg = tiny_student_cfg(*tiny_teacher, SCALE_ROI_BY_PROPOSAL_SCORE=True)
    student = build_model(cfg).eval()
    feature = torch.randn(1, 16, 12, 12)
    boxes = [Boxes(torch.tensor([[0.0, 0, 24, 24], [8, 8, 40, 40]]))]
    scores = torch.tensor([3.0, 0.25])
    pooled = box_average_pool(feature, boxes, 1 / 4, 3)
    expected = student.head.layers(pooled * scores.view(2, 1, 1, 1))
    torch.testing.assert_close(student.roi_features(feature, boxes, scores), expected)
    cfg.MODEL.DISTILL.SCALE_ROI_BY_PROPOSAL_SCORE = False
    student.scale_rois_by_score = False
    torch.testing.assert_close(
        student.roi_features(feature, boxes, scores), student.head.layers(pooled)
    )


def test_each_loss_weight_scales_its_loss_linearly(tiny_teacher):
    batch = annotated_batch(tiny_student_cfg(*tiny_teacher))
    losses = {}
    for weights in [(1.0, 1.0, 1.0), (2.0, 0.5, 3.0)]:
        cfg = tiny_student_cfg(*tiny_teacher, LABEL_WEIGHT=weights[0], PREDICTION_WEIGHT=weights[1])
        cfg.MODEL.DISTILL.FEATURE_WEIGHT = weights[2]
        torch.manual_seed(0)
        student = build_model(cfg)
        torch.manual_seed(1)  # the same dropout masks
        losses[weights] = student(batch)
    for name, factor in [("loss_cls", 2.0), ("loss_kd_pred", 0.5), ("loss_kd_feat", 3.0)]:
        one, scaled = losses[(1.0, 1.0, 1.0)][name], losses[(2.0, 0.5, 3.0)][name]
        assert scaled.item() == pytest.approx(factor * one.item(), rel=1e-5), name


def test_prediction_loss_gradient_matches_its_formula(tiny_teacher):
    """Only L_p' on: the classifier bias gradient is sum_i (sigmoid(z_i / t) - p'_T,i) / (t B)."""
    cfg = tiny_student_cfg(*tiny_teacher, FEATURE_WEIGHT=0.0, LABEL_WEIGHT=0.0)
    student = build_model(cfg)
    batch = annotated_batch(cfg)
    logits = []
    student.classifier.register_forward_hook(lambda m, i, output: logits.append(output.detach()))
    losses = student(batch)
    assert set(losses) == {"loss_kd_pred"}
    losses["loss_kd_pred"].backward()
    z = logits[0].double()
    t = cfg.MODEL.DISTILL.TEMPERATURE
    soft = torch.stack([x["teacher"]["soft_scores"] for x in batch]).double()
    expected = ((torch.sigmoid(z / t) - soft) / (t * 2)).sum(0)
    torch.testing.assert_close(
        student.classifier.bias.grad.double(), expected, rtol=1e-4, atol=1e-6
    )


def test_softmax_prediction_loss_reaches_the_classifier_without_moving_its_level(tiny_teacher):
    """PREDICTION_LOSS "softmax", only L_p' on: the classifier bias gradient is
    sum_i t (softmax(z_i / t) - q_T,i) / B, which sums to 0 over the classes."""
    cfg = tiny_student_cfg(*tiny_teacher, FEATURE_WEIGHT=0.0, LABEL_WEIGHT=0.0)
    cfg.MODEL.DISTILL.PREDICTION_LOSS = "softmax"
    student = build_model(cfg)
    batch = annotated_batch(cfg)
    logits = []
    student.classifier.register_forward_hook(lambda m, i, output: logits.append(output.detach()))
    student(batch)["loss_kd_pred"].backward()
    z, t = logits[0].double(), cfg.MODEL.DISTILL.TEMPERATURE
    soft = torch.stack([x["teacher"]["soft_scores"] for x in batch]).double()
    q = soft / soft.sum(1, keepdim=True)
    expected = (t * (torch.softmax(z / t, 1) - q) / 2).sum(0)
    grad = student.classifier.bias.grad.double()
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
    assert grad.abs().max() > 1e-4 and grad.sum().abs() < 1e-6


def test_learned_temperature_starts_at_one_over_t_and_learns_faster(tiny_teacher):
    from wsd_distill.engine import Trainer

    cfg = tiny_student_cfg(*tiny_teacher, LEARN_TEMPERATURE=True, FEATURE_WEIGHT=0.0)
    student = build_model(cfg)
    assert student.inverse_temperature.shape == (5,)  # one per class, as the authors' Scale
    torch.testing.assert_close(student.inverse_temperature.detach(), torch.full((5,), 0.2))
    student(annotated_batch(cfg))["loss_kd_pred"].backward()
    assert (student.inverse_temperature.grad != 0).all()
    groups = Trainer.build_optimizer(cfg, student).param_groups
    (group,) = [g for g in groups if any(p is student.inverse_temperature for p in g["params"])]
    assert group["lr"] == pytest.approx(10 * cfg.SOLVER.BASE_LR) and group["weight_decay"] == 0


def test_new_layers_take_their_lr_factor(tiny_teacher):
    """SOLVER.NEW_LAYER_LR_FACTOR 10 and BIAS_LR_FACTOR 2, the authors' lr_mult: the student's
    classifier at 10x (its bias 20x), the rest at 1x (biases 2x); the teacher's two streams
    alike."""
    from wsd_distill.engine import Trainer

    cfg = tiny_student_cfg(*tiny_teacher)
    cfg.SOLVER.NEW_LAYER_LR_FACTOR, cfg.SOLVER.BIAS_LR_FACTOR = 10.0, 2.0
    student = build_model(cfg)
    lr = {
        id(p): g["lr"] / cfg.SOLVER.BASE_LR
        for g in Trainer.build_optimizer(cfg, student).param_groups
        for p in g["params"]
    }
    assert lr[id(student.classifier.weight)] == 10 and lr[id(student.classifier.bias)] == 20
    layers = student.head.layers[1]  # fc6
    assert lr[id(layers.weight)] == 1 and lr[id(layers.bias)] == 2
    teacher_cfg = tiny_cfg()
    teacher_cfg.SOLVER.NEW_LAYER_LR_FACTOR = 10.0
    teacher = build_model(teacher_cfg)
    groups = Trainer.build_optimizer(teacher_cfg, teacher).param_groups
    lr = {id(p): g["lr"] / teacher_cfg.SOLVER.BASE_LR for g in groups for p in g["params"]}
    for layer in (teacher.cls_score, teacher.det_score):
        assert lr[id(layer.weight)] == 10
    assert {lr[id(p)] for p in teacher.backbone.parameters()} == {1}


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def test_student_inference_runs_no_roi_op(tiny_teacher):
    cfg = tiny_student_cfg(*tiny_teacher)
    cfg.MODEL.STUDENT.POOLING = "max"  # training pools RoIs with torchvision's roi_pool
    student = build_model(cfg).eval()
    inputs = [make_input(5, seed=4)]
    with torch.no_grad(), _OpLog() as log:
        outputs = student(inputs)
    assert list(outputs[0]) == ["image_scores", "image_logits"]
    assert outputs[0]["image_scores"].shape == (5,)
    torch.testing.assert_close(outputs[0]["image_scores"], outputs[0]["image_logits"].sigmoid())
    assert not [op for op in log.ops if "roi" in op.lower()]
    assert any("convolution" in op for op in log.ops)  # the log does see the network's ops
    student.train()
    batch = annotated_batch(cfg)
    with _OpLog() as log:
        student(batch)
    assert [op for op in log.ops if "roi_pool" in op]


def test_kd_without_teacher_outputs_is_a_clear_error(tiny_teacher):
    student = build_model(tiny_student_cfg(*tiny_teacher))
    with pytest.raises(KeyError, match="TeacherHook"):
        student([make_input(3)])


def test_bad_distillation_settings_are_named(tiny_teacher):
    """By ``check_config``, which every tool (``setup_cfg``) and the ``Trainer`` run first."""
    for cfg, expected in [
        (
            tiny_student_cfg(*tiny_teacher, ROI_TOPK=-1),
            r"ROI_TOPK is -1: expected an integer in \[0, inf\)",
        ),
        (
            tiny_student_cfg(
                *tiny_teacher, LABEL_WEIGHT=0.0, PREDICTION_WEIGHT=0.0, FEATURE_WEIGHT=0.0
            ),
            "are all 0: the student would learn nothing",
        ),
        (tiny_student_cfg(*tiny_teacher, FEATURE_WEIGHT=-1.0), r"FEATURE_WEIGHT is -1.0: expected"),
        (
            tiny_student_cfg(*tiny_teacher, TEMPERATURE=0.0),
            r"TEMPERATURE is 0.0: expected a finite",
        ),
        (
            tiny_student_cfg(*tiny_teacher, TEACHER_TEMPERATURE=-0.5),
            r"TEACHER_TEMPERATURE is -0.5: expected",
        ),
        (
            tiny_student_cfg(*tiny_teacher, head="mlp"),
            r"MODEL.STUDENT.HEAD is 'mlp': expected one of",
        ),
        (
            tiny_student_cfg(*tiny_teacher, PREDICTION_LOSS="kl"),
            r"PREDICTION_LOSS is 'kl': expected one of",
        ),
        (
            tiny_student_cfg(*tiny_teacher, PREDICTION_LOSS="softmax", LEARN_TEMPERATURE=True),
            r"LEARN_TEMPERATURE learns one t per class, but PREDICTION_LOSS 'softmax'",
        ),
    ]:
        with pytest.raises(ValueError, match=expected):
            check_config(cfg)


def test_mismatched_teacher_fails_clearly(tiny_teacher, tmp_path):
    config_file, weights = tiny_teacher
    with pytest.raises(ValueError, match="NUM_CLASSES 5 but the student has .*NUM_CLASSES 7"):
        build_teacher(tiny_student_cfg(config_file, weights, num_classes=7))
    with pytest.raises(ValueError, match="width 32 but MODEL.DISTILL.TEACHER_FEATURE_DIM is 64"):
        build_teacher(tiny_student_cfg(config_file, weights, TEACHER_FEATURE_DIM=64))
    with pytest.raises(FileNotFoundError, match="TEACHER_WEIGHTS: no such file"):
        build_teacher(tiny_student_cfg(config_file, str(tmp_path / "missing.pth")))
    with pytest.raises(FileNotFoundError, match="TEACHER_CONFIG: no such file"):
        build_teacher(tiny_student_cfg(str(tmp_path / "missing.yaml"), weights))
    other = tiny_cfg(num_classes=5)
    other.MODEL.ROI_HEADS.NUM_CLASSES = 6
    DetectionCheckpointer(build_model(other), str(tmp_path)).save("six")
    with pytest.raises(ValueError, match="trained for 6 classes"):
        build_teacher(tiny_student_cfg(config_file, str(tmp_path / "six.pth")))
    student_only = tiny_cfg()
    student_only.MODEL.META_ARCHITECTURE = "StudentClassifier"
    (tmp_path / "student.yaml").write_text(student_only.dump())
    with pytest.raises(ValueError, match="not a WSDDN"):
        build_teacher(tiny_student_cfg(str(tmp_path / "student.yaml"), weights))
    # a student's checkpoint, or a WSDDN with another head, would leave the teacher's heads random
    cfg = tiny_student_cfg(config_file, weights)
    cfg.MODEL.DISTILL.ENABLED = False
    DetectionCheckpointer(build_model(cfg), str(tmp_path)).save("a_student")
    wider = tiny_cfg()
    wider.MODEL.ROI_BOX_HEAD.FC_DIM = 48
    DetectionCheckpointer(build_model(wider), str(tmp_path)).save("wider")
    for name, what in [("a_student", r"\d+ missing"), ("wider", "size mismatch")]:
        with pytest.raises(
            ValueError, match=f"TEACHER_WEIGHTS '.*{name}.pth' does not fit .*{what}"
        ):
            build_teacher(tiny_student_cfg(config_file, str(tmp_path / f"{name}.pth")))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pth' cannot be read .* not a checkpoint"):
        build_teacher(tiny_student_cfg(config_file, str(tmp_path / "garbage.pth")))


def test_student_builds_without_reading_its_teachers_config(tiny_teacher, tmp_path):
    """--eval-only of a KD student works where its teacher's config file is not to be found."""
    cfg = tiny_student_cfg(str(tmp_path / "elsewhere.yaml"), str(tmp_path / "elsewhere.pth"))
    assert build_model(cfg).classifier.out_features == 5


def load(dataset, name):
    return setup_cfg(os.path.join("configs", dataset, name))


@pytest.mark.parametrize(
    "dataset", ["COCO", "NUS-WIDE", "VOC", "Synthetic", "Synthetic/Pretrained"]
)
def test_student_configs_build_and_match_their_teacher(dataset, monkeypatch):
    """Every student config builds; a KD config's teacher has the same classes and the RoI-feature
    width the student was told; each joint KD config has the authors' two stages beside it:
    stage 1 without label or prediction loss, stage 2 without feature loss, from stage 1."""
    monkeypatch.chdir(ROOT)  # configs name each other relative to the project root
    names = [
        n for n in sorted(os.listdir(os.path.join("configs", dataset))) if n.startswith("S-Cls")
    ]
    for joint in [n for n in names if n.endswith("KD.yaml")]:
        assert {joint.replace("KD", f"KD_stage{k}") for k in (1, 2)} <= set(names), joint
    for name in names:
        cfg = load(dataset, name)
        weights, cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = cfg.MODEL.WEIGHTS, "", "cpu"
        classes = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes
        student = build_model(cfg)
        assert student.classifier.out_features == len(classes), name
        d = cfg.MODEL.DISTILL
        if d.ENABLED:
            teacher_cfg = get_teacher_cfg(cfg)
            assert MetadataCatalog.get(teacher_cfg.DATASETS.TRAIN[0]).thing_classes == classes
            assert box_head_width(teacher_cfg) == d.TEACHER_FEATURE_DIM, name
        if "stage1" in name:
            assert (d.LABEL_WEIGHT, d.PREDICTION_WEIGHT) == (0, 0) and d.FEATURE_WEIGHT > 0
            assert not student.classifier.weight.requires_grad and not cfg.DATASETS.TEST
        if "stage2" in name:
            assert d.FEATURE_WEIGHT == 0 and d.LABEL_WEIGHT > 0 and d.PREDICTION_WEIGHT > 0
            stage1 = load(dataset, name.replace("stage2", "stage1"))
            assert weights == os.path.join(stage1.OUTPUT_DIR, "model_final.pth"), name


def test_box_average_pool_by_hand_and_gradient():
    feature = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)  # stride 8: cells of 8 x 8
    boxes = [
        Boxes(
            torch.tensor(
                [[0, 0, 16, 16], [0, 0, 8, 16], [4, 0, 12, 8], [2, 2, 3, 3.0], [-5, -5, 40, 8]]
            )
        )
    ]
    # whole map; left column; half of each top cell; inside one cell; clipped to the top row
    torch.testing.assert_close(
        box_average_pool(feature, boxes, 1 / 8).flatten(), torch.tensor([2.5, 2.0, 1.5, 1.0, 1.5])
    )
    # 2 x 2 bins of the whole map are its cells; those of [4, 0, 16, 16] span cells 0.5-1.25
    # (2/3 of the first column's value, 1/3 of the second's) and 1.25-2 (the second's)
    bins = box_average_pool(
        feature, [Boxes(torch.tensor([[0.0, 0, 16, 16], [4, 0, 16, 16]]))], 1 / 8, 2
    )
    torch.testing.assert_close(bins[0, 0], feature[0, 0])
    torch.testing.assert_close(bins[1, 0], torch.tensor([[4 / 3, 2.0], [10 / 3, 4.0]]))
    x = torch.randn(2, 3, 6, 6, dtype=torch.double, requires_grad=True)
    boxes = [
        Boxes(torch.tensor([[3.0, 5, 17, 30], [0, 0, 48, 48]], dtype=torch.double)),
        Boxes(torch.tensor([[10.0, 11, 12, 13]], dtype=torch.double)),
    ]
    whole = box_average_pool(x, boxes, 1 / 8, 3)[1]
    torch.testing.assert_close(whole, F.adaptive_avg_pool2d(x[0], 3))
    assert torch.autograd.gradcheck(lambda f: box_average_pool(f, boxes, 1 / 8, 3), (x,))


@pytest.mark.slow  # 24 s on 2 cores: two full-size VGG-16s
def test_torchvision_vgg16_converts_into_the_papers_teacher_and_student(tmp_path, monkeypatch):
    """A randomly initialised torchvision VGG-16, converted: our conv5_3 is torchvision's, and the
    student's fc7 on the whole 224 image is torchvision's fc7 (pool5 -> fc6 -> fc7)."""
    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16().eval()
    torch.save(vgg.state_dict(), tmp_path / "vgg16.pth")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        conv5_3 = vgg.features[:30](x)
        fc7 = vgg.classifier[:5](vgg.features(x).flatten(1))
    for model, config in [("teacher", "T-WDet_VGG16.yaml"), ("student", "S-Cls_VGG16.yaml")]:
        output = tmp_path / f"{model}.pth"
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "tools", "convert_torchvision_vgg.py")]
            + [str(tmp_path / "vgg16.pth"), "--model", model, "--output", str(output)],
            check=True,
            capture_output=True,
        )
        cfg = load("COCO", config)
        cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = str(output), "cpu"
        ours = build_model(cfg).eval()
        DetectionCheckpointer(ours).load(cfg.MODEL.WEIGHTS)
        with torch.no_grad():
            feature = ours.backbone(x)["conv5"]
            torch.testing.assert_close(feature, conv5_3, rtol=1e-4, atol=1e-4)
            if model == "student":
                torch.testing.assert_close(ours.head(feature), fc7, rtol=1e-4, atol=1e-4)
            else:
                torch.testing.assert_close(ours.box_head[1].weight, vgg.classifier[0].weight)
                torch.testing.assert_close(ours.box_head[4].weight, vgg.classifier[3].weight)


def test_a_teacher_with_another_class_order_is_refused(tiny_teacher, tmp_path):
    """The teacher's run names its classes (MODEL.CLASS_NAMES): in another order than the
    student's, its soft scores would teach the wrong classes."""
    config_file, weights = tiny_teacher
    teacher_cfg = tiny_cfg()
    teacher_cfg.MODEL.CLASS_NAMES = ["a", "b", "c", "d", "e"]
    (tmp_path / "config.yaml").write_text(teacher_cfg.dump())
    cfg = tiny_student_cfg(str(tmp_path / "config.yaml"), weights)
    cfg.MODEL.CLASS_NAMES = ["b", "a", "c", "d", "e"]
    with pytest.raises(ValueError, match=r"another order, or others: .*\(0, 'b', 'a'\)"):
        build_teacher(cfg)


def test_unlabeled_images_take_no_part_in_the_label_loss(tiny_teacher):
    """A batch mixing labelled images and images whose labels are hidden (``unlabeled``, as
    DATASETS.UNLABELED's): L_p is the labelled images' alone (their mean) and sends no gradient
    to the others' logits; L_p' and L_f are finite and reach every image; a batch of unlabeled
    images alone gives a zero L_p still in the graph."""
    cfg = tiny_student_cfg(*tiny_teacher)
    student = build_model(cfg)
    batch = annotated_batch(cfg) + TeacherHook(cfg, teacher=build_teacher(cfg)).annotate(
        [make_input(5, labels=(0, 2), seed=2)]
    )
    batch[1]["unlabeled"] = True
    logits = []

    def keep(module, inputs, out):
        out.retain_grad()
        logits.append(out)

    student.classifier.register_forward_hook(keep)
    losses = student(batch)
    assert set(losses) == {"loss_cls", "loss_kd_pred", "loss_kd_feat"}
    assert all(torch.isfinite(v) for v in losses.values())
    labelled = torch.stack([batch[0]["multi_labels"], batch[2]["multi_labels"]])
    expected = F.binary_cross_entropy_with_logits(logits[0][[0, 2]], labelled, reduction="sum") / 2
    torch.testing.assert_close(losses["loss_cls"], cfg.MODEL.DISTILL.LABEL_WEIGHT * expected)
    losses["loss_cls"].backward(retain_graph=True)
    assert logits[0].grad[1].abs().sum() == 0 and logits[0].grad[0].abs().sum() > 0
    logits[0].grad = None
    losses["loss_kd_pred"].backward()
    assert (logits[0].grad.abs().sum(dim=1) > 0).all()
    for x in batch:
        x["unlabeled"] = True
    alone = student(batch)["loss_cls"]
    assert alone.item() == 0 and alone.requires_grad
