"""Distillation: the three losses by hand, the student, the TeacherHook, gradients, bad teachers."""

import math
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from test_wsddn import ROOT, make_input, tiny_cfg
from torch.utils._python_dispatch import TorchDispatchMode

from wsd_distill import add_wsd_distill_config
from wsd_distill.config import get_teacher_cfg
from wsd_distill.engine import TeacherHook, build_teacher
from wsd_distill.modeling import (
    prediction_distill_loss,
    roi_feature_distill_loss,
    wsddn_soft_scores,
)
from wsd_distill.modeling.roi_feature_adapter import box_mean_pool

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
    loss = prediction_distill_loss(z, p, t=5.0)

    def bce(logit, target):
        s = 1 / (1 + math.exp(-logit / 5.0))
        return -(target * math.log(s) + (1 - target) * math.log(1 - s))

    expected = (
        bce(5, 0.8) + bce(-10, 0.3) + bce(0, 0.5) + bce(2.5, 0.9)
    ) / 2  # sum over classes, mean over images
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/dz of BCE(sigmoid(z/t), p) is (sigmoid(z/t) - p) / t, divided by B = 2
    assert z.grad[0, 0].item() == pytest.approx((1 / (1 + math.exp(-1)) - 0.8) / 5 / 2, rel=1e-5)


def test_feature_loss_by_hand():
    teacher = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    student = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = roi_feature_distill_loss(student, teacher)
    assert loss.item() == pytest.approx((1 + 4 + 1 + 1) / (2 * 2))
    loss.backward()
    assert teacher.grad is None
    torch.testing.assert_close(
        student.grad, torch.tensor([[-0.5, -1.0], [0.5, 0.5]])
    )  # (f_S - f_T) / N


def student_cfg(teacher_config, teacher_weights, num_classes=5, **distill):
    cfg = tiny_cfg(num_classes)
    cfg.MODEL.META_ARCHITECTURE = "StudentClassifier"
    cfg.MODEL.VGG.OUT_FEATURES = ["conv2", "conv3"]
    cfg.MODEL.STUDENT.NUM_CLASSES = num_classes
    cfg.MODEL.STUDENT.IN_FEATURE = "conv3"
    cfg.MODEL.STUDENT.INPUT_SIZE = 48
    cfg.MODEL.DISTILL.ENABLED = True
    cfg.MODEL.DISTILL.TEACHER_CONFIG = teacher_config
    cfg.MODEL.DISTILL.TEACHER_WEIGHTS = teacher_weights
    cfg.MODEL.DISTILL.FEATURE_LEVELS = ["conv2", "conv3"]
    for k, v in distill.items():
        cfg.MODEL.DISTILL[k] = v
    return cfg


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A tiny WSDDN's config and weights on disk, as a trained teacher would leave them."""
    folder = tmp_path_factory.mktemp("teacher")
    cfg = tiny_cfg()
    torch.manual_seed(0)
    teacher = build_model(cfg)
    DetectionCheckpointer(teacher, str(folder)).save("model_final")
    config_file = folder / "config.yaml"
    config_file.write_text(cfg.dump())
    return str(config_file), str(folder / "model_final.pth")


def test_student_learns_from_teacher_and_teacher_stays_frozen(teacher_files):
    cfg = student_cfg(*teacher_files, ROI_SELECT="top", ROI_TOPK=4)
    student = build_model(cfg)
    teacher = build_teacher(cfg)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batch = [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
    TeacherHook(cfg, teacher=teacher).annotate(batch)
    assert [len(x["teacher"]["cls_logits"]) for x in batch] == [7, 3]
    assert batch[0]["teacher"]["roi_features"].shape == (7, 32)

    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    losses = student(batch)
    assert set(losses) == {"loss_cls", "loss_kd_pred", "loss_kd_feat"}
    sum(losses.values()).backward()
    for name in (
        "classifier.weight",
        "backbone.conv1.0.weight",
        "feature_adapter.adapters.conv2.weight",
        "feature_adapter.adapters.conv3.weight",
    ):
        assert student.get_parameter(name).grad.abs().sum() > 0, name
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_prediction_loss_gradient_matches_its_formula(teacher_files):
    """Only L_p' on: the classifier bias gradient is sum_i (sigmoid(z_i / t) - p'_T,i) / (t B)."""
    cfg = student_cfg(*teacher_files, FEATURE_WEIGHT=0.0, LABEL_WEIGHT=0.0)
    student = build_model(cfg)
    assert student.feature_adapter is None
    batch = TeacherHook(cfg, teacher=build_teacher(cfg)).annotate(
        [make_input(6, seed=2), make_input(4, seed=3)]
    )
    logits = []
    student.classifier.register_forward_hook(
        lambda module, inputs, output: logits.append(output.detach())
    )
    losses = student(batch)
    assert set(losses) == {"loss_cls", "loss_kd_pred"}
    losses["loss_kd_pred"].backward()
    z = logits[0].double()
    t = cfg.MODEL.DISTILL.TEMPERATURE
    batch_soft = wsddn_soft_scores(
        torch.cat([x["teacher"]["cls_logits"] for x in batch]),
        torch.cat([x["teacher"]["det_logits"] for x in batch]),
        [6, 4],
        0.5,
        0.5,
    ).double()
    expected = ((torch.sigmoid(z / t) - batch_soft) / (t * 2)).sum(0)
    torch.testing.assert_close(
        student.classifier.bias.grad.double(), expected, rtol=1e-4, atol=1e-6
    )


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def test_student_inference_runs_no_roi_op(teacher_files):
    student = build_model(student_cfg(*teacher_files)).eval()
    inputs = [make_input(5, seed=4)]
    with torch.no_grad(), _OpLog() as log:
        outputs = student(inputs)
    assert list(outputs[0]) == ["image_scores"] and outputs[0]["image_scores"].shape == (5,)
    assert not [op for op in log.ops if "roi" in op.lower()]
    assert any("convolution" in op for op in log.ops)  # the log does see the network's ops
    student.train()
    with _OpLog() as log:
        student(
            TeacherHook(
                student_cfg(*teacher_files), teacher=build_teacher(student_cfg(*teacher_files))
            ).annotate(inputs)
        )
    assert [op for op in log.ops if "roi_align" in op]


def test_kd_without_teacher_outputs_is_a_clear_error(teacher_files):
    student = build_model(student_cfg(*teacher_files))
    with pytest.raises(KeyError, match="TeacherHook"):
        student([make_input(3)])


def test_unknown_roi_select_is_named(teacher_files):
    with pytest.raises(
        ValueError, match="MODEL.DISTILL.ROI_SELECT must be 'all' or 'top', got 'best'"
    ):
        build_model(student_cfg(*teacher_files, ROI_SELECT="best"))


def test_mismatched_teacher_fails_clearly(teacher_files, tmp_path):
    config_file, weights = teacher_files
    with pytest.raises(
        ValueError, match="NUM_CLASSES 5 but the student has MODEL.STUDENT.NUM_CLASSES 7"
    ):
        build_teacher(student_cfg(config_file, weights, num_classes=7))
    with pytest.raises(FileNotFoundError, match="TEACHER_WEIGHTS: no such file"):
        build_teacher(student_cfg(config_file, str(tmp_path / "missing.pth")))
    with pytest.raises(FileNotFoundError, match="TEACHER_CONFIG: no such file"):
        build_teacher(student_cfg(str(tmp_path / "missing.yaml"), weights))
    other = tiny_cfg(num_classes=5)
    other.MODEL.WSDDN.NUM_CLASSES = 6
    DetectionCheckpointer(build_model(other), str(tmp_path)).save("six")
    with pytest.raises(ValueError, match="trained for 6 classes"):
        build_teacher(student_cfg(config_file, str(tmp_path / "six.pth")))
    student_only = tiny_cfg()
    student_only.MODEL.META_ARCHITECTURE = "StudentClassifier"
    (tmp_path / "student.yaml").write_text(student_only.dump())
    with pytest.raises(ValueError, match="not a WSDDN"):
        build_teacher(student_cfg(str(tmp_path / "student.yaml"), weights))


@pytest.mark.parametrize("dataset", ["COCO", "NUS-WIDE", "VOC", "Synthetic"])
def test_student_configs_build_and_match_their_teacher(dataset, monkeypatch):
    """Every student config builds; a KD config's teacher config exists and has the same classes."""
    monkeypatch.chdir(ROOT)  # configs name each other relative to the project root
    names = [
        n
        for n in sorted(os.listdir(os.path.join(ROOT, "configs", dataset)))
        if n.startswith("S-Cls")
    ]
    assert any("KD" in n for n in names) and any("KD" not in n for n in names)
    for name in names:
        cfg = add_wsd_distill_config(get_cfg())
        cfg.merge_from_file(os.path.join("configs", dataset, name))
        cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = "", "cpu"
        classes = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes
        student = build_model(cfg)
        assert student.classifier.out_features == len(classes), name
        if cfg.MODEL.DISTILL.ENABLED:
            teacher_cfg = get_teacher_cfg(cfg)
            assert MetadataCatalog.get(teacher_cfg.DATASETS.TRAIN[0]).thing_classes == classes, name
            assert (student.feature_adapter is not None) == (
                cfg.MODEL.DISTILL.FEATURE_WEIGHT > 0
            ), name


def test_box_mean_pool_by_hand_and_gradient():
    feature = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(
        1, 1, 2, 2
    )  # stride 8: cells of 8 x 8 pixels
    boxes = [
        Boxes(
            torch.tensor(
                [[0, 0, 16, 16], [0, 0, 8, 16], [4, 0, 12, 8], [2, 2, 3, 3.0], [-5, -5, 40, 8]]
            )
        )
    ]
    # whole map; left column; half of each top cell; inside one cell; clipped to the top row
    torch.testing.assert_close(
        box_mean_pool(feature, boxes, 1 / 8).flatten(), torch.tensor([2.5, 2.0, 1.5, 1.0, 1.5])
    )
    x = torch.randn(2, 3, 5, 6, dtype=torch.double, requires_grad=True)
    boxes = [
        Boxes(torch.tensor([[3.0, 5, 17, 30], [0, 0, 48, 40]], dtype=torch.double)),
        Boxes(torch.tensor([[10.0, 11, 12, 13]], dtype=torch.double)),
    ]
    assert torch.autograd.gradcheck(lambda f: box_mean_pool(f, boxes, 1 / 8), (x,))
