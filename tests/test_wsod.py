"""CorLoc and detection AP against hand-worked examples, WSODEvaluator end to end, the
teacher's per-class NMS and OICR refinement loss; the teacher picture."""

import json
import logging
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluators
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import Visualizer

from wsd_distill.data.datasets import register_coco_multilabel
from wsd_distill.evaluation import MultiLabelEvaluator, WSODEvaluator, corloc, detection_ap
from wsd_distill.evaluation.wsod import ground_truth_of, uses_voc07_metric
from wsd_distill.modeling.wsddn import region_objectness
from wsd_distill.visualization import draw_teacher_view

from conftest import tiny_cfg, write_coco


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


def test_teacher_picture(monkeypatch):
    """The best boxes by max_k S_rk, each labelled with its class and score; the labels."""
    image = np.full((60, 90, 3), 127, np.uint8)
    boxes = np.array([[5, 5, 30, 30], [40, 10, 80, 50], [0, 0, 90, 60]], np.float32)
    region_scores = np.array([[0.1, 0.3], [0.5, 0.0], [0.05, 0.05]], np.float32)
    np.testing.assert_allclose(region_objectness(torch.tensor(region_scores)), [0.3, 0.5, 0.05])
    texts = []
    draw_text = Visualizer.draw_text
    monkeypatch.setattr(
        Visualizer,
        "draw_text",
        lambda self, text, *a, **k: texts.append(text) or draw_text(self, text, *a, **k),
    )
    out = draw_teacher_view(
        image,
        boxes,
        region_scores,
        np.array([0.9, 0.2]),
        ["a", "b"],
        np.array([1, 0]),
        num_proposals=2,
    )
    assert out.dtype == np.uint8 and out.shape[2] == 3 and out.shape[0] >= 60
    assert (out != 127).any(axis=2).mean() > 0.01  # something was drawn
    # the two best boxes (the second best drawn first), then the image's labels
    assert texts == ["b 0.30", "a 0.50", "a 0.90 right", "b 0.20 wrong"]


def test_a_huge_photo_is_shrunk_before_it_is_drawn():
    """A 6400 x 4800 photo is drawn at 1600 x 1200, its box shrunk with it (drawing at full
    size took 18 GB for a 12000 px photo)."""
    image = np.zeros((4800, 6400, 3), np.uint8)
    boxes = np.array([[3200, 2400, 4800, 4000]], np.float32)
    out = draw_teacher_view(image, boxes, np.array([[0.9]]), np.array([0.9]), ["a"])
    assert out.shape == (1200, 1600, 3)
    drawn = (out != 0).any(axis=2)
    assert drawn[600:1000, 800:1200].any() and not drawn[1050:, :750].any()
    assert drawn[600, 790:810].any() and drawn[1000, 790:810].any()  # the box's left edge


def test_wsod_evaluator_end_to_end_on_xywh_boxes_with_a_crowd_box(tmp_path):
    """Three COCO-format images (XYWH boxes; image 10 also has a crowd box, left out of the
    ground truth): boxes equal to the ground truth give CorLoc = AP50 = 100, shifted ones 0."""
    write_coco(tmp_path / "instances.json")
    register_coco_multilabel("test_wsod_coco", str(tmp_path / "instances.json"), str(tmp_path))
    gt = ground_truth_of(DatasetCatalog.get("test_wsod_coco"))
    assert len(gt[10][0]) == 2 and gt[10][0][0].tolist() == [1, 2, 31, 42]  # XYWH -> XYXY
    for shift, expected in ((0, 100.0), (60, 0.0)):
        evaluator = WSODEvaluator("test_wsod_coco", distributed=False)
        evaluator.reset()
        for image_id in (10, 20, 30):
            boxes, classes, _ = gt[image_id]
            instances = Instances((100, 120))
            instances.pred_boxes = Boxes(torch.as_tensor(boxes + shift))
            instances.scores = torch.linspace(0.9, 0.5, len(boxes))
            instances.pred_classes = torch.as_tensor(classes)
            evaluator.process([{"image_id": image_id}], [{"instances": instances}])
        results = evaluator.evaluate()["wsod"]
        assert (results["CorLoc"], results["AP50"]) == pytest.approx((expected, expected))
    # a WSDDN's outputs: CorLoc reads "class_top_regions" (right here), AP50 "instances" (wrong)
    evaluator = WSODEvaluator("test_wsod_coco", distributed=False)
    evaluator.reset()
    for image_id in (10, 20, 30):
        boxes, classes, _ = gt[image_id]
        outputs = {}
        for key, shift in (("instances", 60), ("class_top_regions", 0)):
            outputs[key] = Instances((100, 120))
            outputs[key].pred_boxes = Boxes(torch.as_tensor(boxes + shift))
            outputs[key].scores = torch.linspace(0.9, 0.5, len(boxes))
            outputs[key].pred_classes = torch.as_tensor(classes)
        evaluator.process([{"image_id": image_id}], [outputs])
    results = evaluator.evaluate()["wsod"]
    assert (results["CorLoc"], results["AP50"]) == pytest.approx((100.0, 0.0))


def test_ap50_metric_follows_the_dataset_year(tmp_path):
    """VOC 2007 (metadata year 2007) is scored with the 11-point AP, as detectron2's
    PascalVOCDetectionEvaluator; the evaluator's ap_metric overrides it; a typo is named."""
    write_coco(tmp_path / "instances.json")
    register_coco_multilabel("test_wsod_year", str(tmp_path / "instances.json"), str(tmp_path))
    assert not uses_voc07_metric("test_wsod_year")
    MetadataCatalog.get("test_wsod_year").year = 2007
    assert uses_voc07_metric("test_wsod_year")
    assert not uses_voc07_metric("test_wsod_year", "all_point")
    assert uses_voc07_metric("voc_2007_test_multilabel")
    with pytest.raises(ValueError, match="ap_metric must be one of"):
        uses_voc07_metric("test_wsod_year", "11point")


def test_per_class_nms_and_detections_per_image():
    cfg = tiny_cfg(num_classes=2)
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.4
    wsddn = build_model(cfg)
    boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]))
    one_class = torch.tensor([[0.5, 0.0], [0.4, 0.0], [0.0, 0.0]])  # IoU 0.68: one is left
    kept = wsddn.detect(boxes, one_class, (100, 100))
    assert kept.pred_boxes.tensor.tolist() == [[0, 0, 10, 10]] and kept.scores.tolist() == [0.5]
    two_classes = torch.tensor([[0.5, 0.0], [0.0, 0.4], [0.0, 0.0]])  # another class each: both
    kept = wsddn.detect(boxes, two_classes, (100, 100))
    assert sorted(kept.pred_classes.tolist()) == [0, 1]
    wsddn.detections_per_image = 1
    kept = wsddn.detect(boxes, torch.tensor([[0.5, 0.0], [0.0, 0.4], [0.3, 0.0]]), (100, 100))
    assert kept.scores.tolist() == [0.5]  # the best one


def test_oicr_refine_loss_by_hand():
    """Class 0 present; its top region under the previous branch is region 1 (0.7); region 0
    overlaps it by IoU 0.68 >= 0.5 and becomes class 0 too, region 2 background; every region
    is weighted by that top score."""
    cfg = tiny_cfg(num_classes=2, refine_iters=1)
    wsddn = build_model(cfg)
    proposals = Instances((100, 100))
    proposals.proposal_boxes = Boxes(
        torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    )
    previous = torch.tensor([[0.2, 0.0], [0.7, 0.1], [0.1, 0.3]])
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])  # background first
    loss = wsddn.refine_loss(probs, previous, [proposals], torch.tensor([[1.0, 0.0]]))
    expected = -0.7 * (math.log(0.5) + math.log(0.8) + math.log(0.6)) / 3
    assert loss.item() == pytest.approx(expected)


def test_image_level_labels_train_data_and_skip_the_wsod_evaluation(tmp_path, caplog):
    """A COCO json whose annotations have no bbox (image-level labels): the labels load and
    CorLoc/AP50 are skipped with a log line, not a crash after training. With boxes on some
    images only, the images whose every label has a box are evaluated."""
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 50, "width": 60} for i in (1, 2)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1},
            {"id": 2, "image_id": 2, "category_id": 2},
            {"id": 3, "image_id": 2, "category_id": 1},
        ],
    }
    for name, boxed in (("test_image_level", ()), ("test_partly_boxed", (2, 3))):
        for a in coco["annotations"]:
            if a["id"] in boxed:
                a["bbox"] = [5, 5, 20, 20]
        (tmp_path / f"{name}.json").write_text(json.dumps(coco))
        register_coco_multilabel(name, str(tmp_path / f"{name}.json"), str(tmp_path))
    dicts = DatasetCatalog.get("test_image_level")
    assert [d["multi_labels"] for d in dicts] == [[0], [0, 1]]
    assert all(d["annotations"] == [] for d in dicts)
    outputs = {}
    for key in ("instances", "class_top_regions"):
        outputs[key] = Instances((50, 60))
        outputs[key].pred_boxes = Boxes(torch.tensor([[5.0, 5, 25, 25], [5, 5, 25, 25]]))
        outputs[key].scores = torch.tensor([0.9, 0.8])
        outputs[key].pred_classes = torch.tensor([0, 1])
    for name, expected in (("test_image_level", {}), ("test_partly_boxed", 100.0)):
        evaluator = WSODEvaluator(name, distributed=False)
        evaluator.reset()
        evaluator.process([{"image_id": 1}, {"image_id": 2}], [outputs, outputs])
        with caplog.at_level(logging.INFO, logger="wsd_distill"):
            results = evaluator.evaluate()
        if expected == {}:
            assert results == {} and "CorLoc, AP50 skipped" in caplog.text
        else:  # image 2 only: image 1's label has no box
            assert results["wsod"]["CorLoc"] == pytest.approx(expected)
            assert "on the 1 of 2 images whose every label has a box" in caplog.text
    (tmp_path / "no_ids.json").write_text(
        json.dumps({**coco, "annotations": [{"image_id": 1, "category_id": 1}]})
    )
    register_coco_multilabel("test_no_ann_ids", str(tmp_path / "no_ids.json"), str(tmp_path))
    with pytest.raises(ValueError, match=r"no_ids.json: annotation 0 has no \['id'\]"):
        DatasetCatalog.get("test_no_ann_ids")


def test_the_evaluators_thresholds(tmp_path):
    """MultiLabelEvaluator's score_threshold decides which scores are predictions (OF1),
    WSODEvaluator's iou_threshold which boxes are hits (CorLoc); Trainer.build_evaluator
    builds both, at the literature's 0.5 and 0.5."""
    from wsd_distill.engine import Trainer

    write_coco(tmp_path / "instances.json")
    register_coco_multilabel("test_wsod_keys", str(tmp_path / "instances.json"), str(tmp_path))
    gt = ground_truth_of(DatasetCatalog.get("test_wsod_keys"))
    cfg = tiny_cfg()
    cfg.MODEL.CLASS_NAMES = MetadataCatalog.get("test_wsod_keys").thing_classes
    cfg.OUTPUT_DIR = str(tmp_path)
    boxes, classes, _ = gt[10]  # 30 x 40 boxes: shifted by 2 pixels, IoU 0.80
    instances = Instances((100, 120))
    instances.pred_boxes = Boxes(torch.as_tensor(boxes + 2))
    instances.scores = torch.full((len(boxes),), 0.9)
    instances.pred_classes = torch.as_tensor(classes)
    labels = torch.zeros(3)
    labels[classes] = 1
    strict = DatasetEvaluators(
        [
            MultiLabelEvaluator("test_wsod_keys", score_threshold=0.7),
            WSODEvaluator("test_wsod_keys", iou_threshold=0.85),
        ]
    )
    for evaluator, of1, hits in [
        (Trainer.build_evaluator(cfg, "test_wsod_keys"), 100.0, 100.0),
        (strict, 0.0, 0.0),
    ]:
        evaluator.reset()
        evaluator.process(
            [{"image_id": 10, "multi_labels": labels}],
            [{"image_scores": labels * 0.6, "instances": instances}],
        )
        results = evaluator.evaluate()
        assert results["multilabel"]["OF1"] == pytest.approx(of1)
        assert results["wsod"]["CorLoc"] == pytest.approx(hits)


def test_the_kd_gain_chart_stays_readable_at_150_classes(tmp_path):
    """One horizontal bar a class: the chart grows in height with the classes (about 22 pixels
    a class), never into a strip thousands of pixels wide."""
    import cv2

    from wsd_distill.visualization import plot_ap_gain

    rng = np.random.default_rng(0)
    for classes in (12, 150):
        path = str(tmp_path / f"gain{classes}.png")
        names = [f"class {k}" for k in range(classes)]
        plot_ap_gain(names, list(rng.integers(1, 300, classes)), rng.random(classes) * 100,
                     rng.random(classes) * 100, path)  # fmt: skip
        height, width = cv2.imread(path).shape[:2]
        assert width == 700 and 20 * classes < height < 30 * classes + 200
