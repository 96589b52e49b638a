"""The WSDDN teacher: head math, gradients, degenerate proposals, checkpoints, bad input."""

import math

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from wsd_distill.data.mapper import whole_image_proposal
from wsd_distill.engine import Trainer
from wsd_distill.modeling import wsddn_scores
from wsd_distill.modeling.box_head import box_head_width

from conftest import make_input, tiny_cfg

L2, L3 = math.log(2), math.log(3)


def test_region_and_image_scores_by_hand():
    """Two images (3 and 2 regions), 2 classes; softmax over classes per region, over regions per
    image."""
    cls_logits = torch.tensor([[0, L3], [0, 0], [L3, 0], [0, 0], [0, 0]])
    det_logits = torch.tensor([[0, 0], [L2, 0], [L3, 0], [0, 0], [L3, 0]])
    region, image = wsddn_scores(cls_logits, det_logits, [3, 2], eps=1e-6)
    # image A: softmax_c rows (1/4, 3/4), (1/2, 1/2), (3/4, 1/4); softmax_r columns (1/6, 2/6, 3/6),
    # (1/3, 1/3, 1/3)
    # image B: softmax_c rows (1/2, 1/2) twice; softmax_r columns (1/4, 3/4), (1/2, 1/2)
    expected = torch.tensor(
        [[1 / 24, 1 / 4], [1 / 6, 1 / 6], [3 / 8, 1 / 12], [1 / 8, 1 / 4], [3 / 8, 1 / 4]]
    )
    torch.testing.assert_close(region, expected)
    torch.testing.assert_close(image, torch.tensor([[7 / 12, 1 / 2], [1 / 2, 1 / 2]]))
    _, clamped = wsddn_scores(torch.tensor([[0.0, -50]]), torch.zeros(1, 2), [1], eps=1e-3)
    torch.testing.assert_close(clamped, torch.tensor([[1 - 1e-3, 1e-3]]))


@pytest.mark.parametrize("refine_iters", [0, 2])
def test_gradients_reach_both_streams_and_the_backbone(refine_iters):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(refine_iters=refine_iters))
    losses = model([make_input(7, seed=1), make_input(3, seed=2)])
    assert set(losses) == {"loss_wsddn", *(f"loss_refine_{i}" for i in range(refine_iters))}
    sum(losses.values()).backward()
    for param in (
        model.cls_score.weight,
        model.det_score.weight,
        model.backbone.conv1[0].weight,
        *[r.weight for r in model.refine_scores],
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_detections_keep_the_scores_from_score_thresh_test():
    """MODEL.ROI_HEADS.SCORE_THRESH_TEST: the teacher's detections (AP50's) are the region scores
    from it up; at 0 every region of every class is kept until NMS."""
    torch.manual_seed(0)
    cfg = tiny_cfg()
    counts = {}
    for threshold in (0.0, 0.05):
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = threshold
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():
            instances = model([make_input(6, seed=4)])[0]["instances"]
        counts[threshold] = len(instances)
        assert (instances.scores >= threshold).all()
    assert counts[0.05] < counts[0.0]


def test_single_whole_image_proposal_and_inference_outputs():
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    one = make_input(1, seed=3)
    one["proposals"] = whole_image_proposal(64, 80)
    with torch.no_grad():
        out = model.teacher_outputs([one, make_input(6, seed=4)])
        results = model([one, make_input(6, seed=4)])
    assert out["num_regions"] == [1, 6] and out["roi_features"].shape == (7, 32)
    assert out["cls_logits"].shape == out["det_logits"].shape == (7, 5)
    # one region: softmax over regions is 1, so the image score is softmax over classes
    torch.testing.assert_close(out["image_scores"][0], out["cls_logits"][0].softmax(0))
    inst = results[0]["instances"]
    assert results[0]["image_scores"].shape == (5,) and inst.image_size == (128, 160)
    torch.testing.assert_close(
        inst.pred_boxes.tensor[0], torch.tensor([0.0, 0, 160, 128])
    )  # back in original pixels
    assert (
        len(results[1]["instances"]) > 0
        and (results[1]["instances"].scores[:-1] >= results[1]["instances"].scores[1:]).all()
    )


def test_max_proposals_keeps_the_best_by_objectness():
    cfg = tiny_cfg()
    cfg.MODEL.WSDDN.MAX_PROPOSALS = 4
    model = build_model(cfg).eval()
    x = make_input(10, seed=5)
    with torch.no_grad():
        kept = model.teacher_outputs([x])["proposals"][0]
    assert len(kept) == 4
    torch.testing.assert_close(
        kept.objectness_logits.sort().values,
        x["proposals"].objectness_logits.topk(4).values.sort().values,
    )


def test_any_detectron2_box_head_serves():
    """MODEL.ROI_BOX_HEAD.NAME picks from detectron2's ROI_BOX_HEAD_REGISTRY: its own
    FastRCNNConvFCHead (2 fc of FC_DIM) gives the teacher RoI features of that width, and
    box_head_width (the student's check of TEACHER_FEATURE_DIM) says so."""
    cfg = tiny_cfg()
    cfg.MODEL.ROI_BOX_HEAD.NAME, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = "FastRCNNConvFCHead", 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 24
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model.teacher_outputs([make_input(6, seed=4)])
    assert out["roi_features"].shape == (6, 24) and box_head_width(cfg) == 24


def test_checkpoint_round_trip_and_class_count_mismatch(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("teacher")
    other = build_model(tiny_cfg()).eval()
    DetectionCheckpointer(other).load(str(tmp_path / "teacher.pth"))
    batch = [make_input(5, seed=6)]
    with torch.no_grad():
        torch.testing.assert_close(model(batch)[0]["image_scores"], other(batch)[0]["image_scores"])
    with pytest.raises(
        ValueError, match="trained for 5 classes but MODEL.ROI_HEADS.NUM_CLASSES is 7"
    ):
        DetectionCheckpointer(build_model(tiny_cfg(num_classes=7))).load(
            str(tmp_path / "teacher.pth")
        )


def test_bad_configuration_is_named(datasets_dir):
    cfg = tiny_cfg(num_classes=5)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("tiny_shapes_train",), ("tiny_shapes_test",)
    with pytest.raises(
        ValueError, match="'tiny_shapes_train' has 12 classes but MODEL.ROI_HEADS.NUM_CLASSES is 5"
    ):
        Trainer.build_model(cfg)
    model = build_model(tiny_cfg())
    batch = [make_input(3)]
    del batch[0]["proposals"]
    with pytest.raises(KeyError, match="WSDDN needs proposals"):
        model(batch)
