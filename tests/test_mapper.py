"""MultiLabelDatasetMapper: augmentations move proposals with the image; labels; bad input."""

import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from torch.nn import functional as F

from wsd_distill import add_wsd_distill_config, check_config
from wsd_distill.config import merge_config_file
from wsd_distill.data import MultiLabelDatasetMapper, save_proposals
from wsd_distill.data.augmentation import build_augmentation
from wsd_distill.data.teacher_cache import cache_variants
from wsd_distill.engine import Trainer, setup_cfg

from conftest import ROOT


def _record(tmp_path, proposals):
    image = np.zeros((60, 100, 3), np.uint8)
    image[10:30, 5:25] = 255  # a white square at x 5..25, y 10..30
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, image)
    return {
        "file_name": path,
        "image_id": 7,
        "height": 60,
        "width": 100,
        "multi_labels": [1, 3],
        "proposal_boxes": np.array(proposals, np.float32),
        "proposal_objectness_logits": np.arange(len(proposals), 0, -1, dtype=np.float32),
        "proposal_bbox_mode": BoxMode.XYXY_ABS,
        "annotations": [{"bbox": [5, 10, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1}],
    }


def _mapper(augmentations, **kwargs):
    return MultiLabelDatasetMapper(
        True,
        augmentations=augmentations,
        image_format="BGR",
        num_classes=4,
        load_proposals=True,
        **kwargs,
    )


def test_flip_and_resize_move_proposals_with_the_image(tmp_path):
    mapper = _mapper([T.ResizeShortestEdge(120, 1000), T.RandomFlip(prob=1.0)])
    out = mapper(_record(tmp_path, [[5, 10, 25, 30], [0, 0, 100, 60]]))
    assert out["image"].shape == (3, 120, 200) and out["image"].dtype == torch.uint8
    boxes = out["proposals"].proposal_boxes.tensor
    torch.testing.assert_close(boxes, torch.tensor([[150.0, 20, 190, 60], [0, 0, 200, 120]]))
    x0, y0, x1, y1 = boxes[0].int().tolist()
    assert (
        out["image"][:, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].min() > 200
    )  # the box still frames the square
    torch.testing.assert_close(out["multi_labels"], torch.tensor([0.0, 1, 0, 1]))
    assert (out["height"], out["width"], out["image_id"]) == (60, 100, 7)
    assert "annotations" not in out


def test_topk_keeps_the_best_and_whole_image_fallback(tmp_path):
    boxes = [[5, 10, 25, 30], [0, 0, 50, 50], [10, 10, 20, 20], [30, 5, 60, 40]]
    record = _record(tmp_path, boxes)
    record["proposal_objectness_logits"] = np.array([0.2, 0.9, -1.0, 0.5], np.float32)
    kept = _mapper([], proposal_topk=2)(record)["proposals"]  # in any file order, the best two
    torch.testing.assert_close(
        kept.proposal_boxes.tensor, torch.tensor([boxes[1], boxes[3]]).float()
    )
    torch.testing.assert_close(kept.objectness_logits, torch.tensor([0.9, 0.5]))
    mapper = _mapper([], proposal_min_size=8.0)
    out = mapper(_record(tmp_path, [[5, 10, 7, 12]]))  # only a tiny box
    torch.testing.assert_close(
        out["proposals"].proposal_boxes.tensor, torch.tensor([[0.0, 0, 100, 60]])
    )
    out = mapper(_record(tmp_path, np.zeros((0, 4))))  # no proposals at all
    assert len(out["proposals"]) == 1


def test_bad_input_is_named(tmp_path):
    record = _record(tmp_path, [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match=r"Image 7 has label indices \[1, 9\] outside \[0, 4\)"):
        _mapper([])(dict(record, multi_labels=[1, 9]))
    del record["proposal_boxes"]
    with pytest.raises(KeyError, match="Image 7 has no proposals but MODEL.LOAD_PROPOSALS is on"):
        _mapper([])(record)


def _cfg(tmp_path, datasets_dir, proposal_files):
    cfg = add_wsd_distill_config(get_cfg())
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("tiny_shapes_train",), ("tiny_shapes_val",)
    cfg.MODEL.LOAD_PROPOSALS = True
    cfg.DATASETS.PROPOSAL_FILES_TRAIN, cfg.DATASETS.PROPOSAL_FILES_TEST = (
        (f,) for f in proposal_files
    )
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (96,), 128
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS = 4, 0
    return cfg


@pytest.mark.parametrize(
    "suffix,workers", [(".pkl", 0), ("", 2)]
)  # detectron2 pickle; proposal store
def test_trainer_loaders_feed_images_labels_and_proposals(tmp_path, datasets_dir, suffix, workers):
    files = []
    for name in ("tiny_shapes_train", "tiny_shapes_val"):
        dicts = DatasetCatalog.get(name)
        files.append(str(tmp_path / f"{name}{suffix}"))
        save_proposals(
            files[-1],
            [d["image_id"] for d in dicts],
            [(np.array([[0, 0, 50, 40], [10, 10, 90, 90]]), np.array([1.0, 0.0]))] * len(dicts),
        )
    cfg = _cfg(tmp_path, datasets_dir, files)
    cfg.DATALOADER.NUM_WORKERS = workers
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert len(batch) == 4
    for item in batch:
        assert min(item["image"].shape[1:]) == 96 and item["multi_labels"].shape == (12,)
        assert item["multi_labels"].sum() >= 1 and len(item["proposals"]) == 2
        assert "proposal_index" not in item and "proposal_file" not in item
        scale = item["image"].shape[1] / item["height"]  # boxes follow the resize
        np.testing.assert_allclose(item["proposals"].objectness_logits, [1.0, 0.0])
        box = item["proposals"].proposal_boxes.tensor[0].numpy()
        np.testing.assert_allclose(
            box[[0, 2]] if box[0] == 0 else item["image"].shape[2] - box[[2, 0]],
            np.array([0, 50]) * scale,
            rtol=1e-4,
        )  # flipped or not
    test_batch = next(iter(Trainer.build_test_loader(cfg, "tiny_shapes_val")))
    assert min(test_batch[0]["image"].shape[1:]) == 128
    with pytest.raises(KeyError, match="not in DATASETS.TEST"):
        Trainer.build_test_loader(cfg, "tiny_shapes_test")


@pytest.mark.parametrize("name", ["partial.pkl", "partial_store"])
def test_proposal_file_missing_an_image_is_a_clear_error(tmp_path, datasets_dir, name):
    dicts = DatasetCatalog.get("tiny_shapes_train")
    path = str(tmp_path / name)
    save_proposals(
        path,
        [d["image_id"] for d in dicts[1:]],
        [(np.zeros((1, 4)), np.zeros(1))] * (len(dicts) - 1),
    )
    cfg = _cfg(tmp_path, datasets_dir, [path, path])
    with pytest.raises(
        KeyError, match=rf"{name} has no proposals for .*image id '?{dicts[0]['image_id']}\b"
    ):
        Trainer.build_train_loader(cfg)


def test_unsupported_training_sampler_is_refused(tmp_path, datasets_dir):
    cfg = _cfg(tmp_path, datasets_dir, ["unused", "unused"])  # LOAD_PROPOSALS is off below
    cfg.MODEL.LOAD_PROPOSALS, cfg.DATALOADER.SAMPLER_TRAIN = False, "RepeatFactorTrainingSampler"
    with pytest.raises(
        ValueError, match="DATALOADER.SAMPLER_TRAIN 'RepeatFactorTrainingSampler' is not supported"
    ):
        Trainer.build_train_loader(cfg)


def test_square_warp_scales_x_and_y_apart(tmp_path):
    """INPUT.RESIZE "square" (the authors' input): a 60 x 100 image becomes 120 x 120, so
    proposals scale by 1.2 in x and 2 in y."""
    cfg = add_wsd_distill_config(get_cfg())
    cfg.INPUT.RESIZE, cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = "square", (120,), "none"
    mapper = _mapper(build_augmentation(cfg, is_train=True))
    out = mapper(_record(tmp_path, [[5, 10, 25, 30]]))
    assert out["image"].shape == (3, 120, 120)
    torch.testing.assert_close(
        out["proposals"].proposal_boxes.tensor, torch.tensor([[6.0, 20, 30, 60]])
    )


def test_a_crop_cuts_the_image_and_its_proposals(tmp_path):
    """INPUT.CROP (detectron2's keys), relative [1, 0.5]: a random half of the width, before
    the resize; the proposals move and are clipped with it, those outside it dropped, the
    labels kept. The photo's grey level is twice its column, so the crop's offset is read from
    its first pixel. A teacher cache, of whole images, refuses crops."""
    record = _record(tmp_path, [[5, 10, 25, 30], [0, 0, 100, 60]])
    columns = np.broadcast_to((np.arange(100) * 2).astype(np.uint8)[None, :, None], (60, 100, 3))
    cv2.imwrite(record["file_name"], np.ascontiguousarray(columns))
    cfg = add_wsd_distill_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (50,), "none"  # (the crop's size)
    cfg.INPUT.CROP.ENABLED, cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE = True, "relative", [1.0, 0.5]
    mapper = _mapper(build_augmentation(cfg, is_train=True))
    np.random.seed(0)
    kept = set()
    for _ in range(12):
        out = mapper(record)
        assert out["image"].shape == (3, 60, 50)
        x0 = int(out["image"][0, 0, 0]) // 2
        expected = [[0.0, 0, 50, 60]]
        if x0 < 25:
            expected.insert(0, [max(5.0 - x0, 0), 10, 25 - x0, 30])
        torch.testing.assert_close(out["proposals"].proposal_boxes.tensor, torch.tensor(expected))
        torch.testing.assert_close(out["multi_labels"], torch.tensor([0.0, 1, 0, 1]))
        kept.add(x0 < 25)
    assert kept == {True, False}  # the square's box both kept and cut away
    with pytest.raises(ValueError, match="INPUT.CROP.ENABLED draws a new crop"):
        cache_variants(cfg)
    check_config(cfg)
    for key, value, expected in (  # refused with the config, before any image is read
        ("TYPE", "random", r"INPUT.CROP.TYPE is 'random': expected one of"),
        ("SIZE", [1.5, 0.5], r"INPUT.CROP.SIZE is \[1.5, 0.5\]: expected a finite number in"),
        ("SIZE", [0.5], r"INPUT.CROP.SIZE is \[0.5\]: expected two numbers"),
    ):
        bad = cfg.clone()
        bad.INPUT.CROP[key] = value
        with pytest.raises(ValueError, match=expected):
            check_config(bad)


def test_student_test_resize_in_the_loader_resizes_once(tmp_path, monkeypatch):
    """INPUT.SQUARE_SIZE_TEST 64: the test loader warps the image straight to the
    student's 64 x 64, the student does not resize it again, and it sees nearly the picture
    of the default path (the loader's 128 px shortest edge, then the student's resize)."""
    record = _record(tmp_path, [[0, 0, 100, 60]])
    calls = []
    interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: calls.append(1) or interpolate(*a, **k))
    inputs = {}
    for where, side in (("model", 0), ("loader", 64)):
        cfg = setup_cfg(
            os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"),
            ["INPUT.SQUARE_SIZE_TEST", side, "DATASETS.TRAIN", (), "DATASETS.TEST", ()],
        )
        image = _mapper(build_augmentation(cfg, is_train=False))(record)["image"]
        assert image.shape == ((3, 64, 64) if where == "loader" else (3, 128, 213))
        student = build_model(cfg).eval()
        calls.clear()
        inputs[where] = student.preprocess_image([{"image": image}])[0].tensor
        assert len(calls) == (where == "model")
    pixels = (inputs["loader"] - inputs["model"]) * student.pixel_std
    assert pixels.abs().mean() < 2.0, pixels.abs().mean()  # grey levels, out of 255

    cfg.INPUT.SQUARE_SIZE_TEST = -64  # refused with the config, before training
    with pytest.raises(ValueError, match="INPUT.SQUARE_SIZE_TEST"):
        check_config(cfg)


def test_a_removed_key_is_refused_naming_it(tmp_path):
    """Keys removed from this 0.x project are named with their file, not ignored; one that
    moved to detectron2's own keys names where it went (the CHANGELOG lists them), in a file
    and on the command line alike."""
    path = tmp_path / "config.yaml"
    path.write_text("MODEL:\n  EMA:\n    ENABLED: True\n")
    with pytest.raises(KeyError, match=f"{path}: no config key MODEL.EMA'"):
        merge_config_file(add_wsd_distill_config(get_cfg()), str(path))
    path.write_text("MODEL:\n  WSDDN:\n    BOX_HEAD: fc\n")
    with pytest.raises(KeyError, match=r"MODEL.WSDDN.BOX_HEAD: it is MODEL.ROI_BOX_HEAD.NAME \("):
        merge_config_file(add_wsd_distill_config(get_cfg()), str(path))
    with pytest.raises(KeyError, match="overrides: no config key MODEL.WSDDN.FC_DIM: it is MODEL"):
        setup_cfg("", ["MODEL.WSDDN.FC_DIM", 64])
    path.write_text("TEST:\n  WSOD:\n    ENABLED: False\n")
    with pytest.raises(KeyError, match=r"key TEST.WSOD: removed, CorLoc and AP50 run whenever"):
        merge_config_file(add_wsd_distill_config(get_cfg()), str(path))
    with pytest.raises(KeyError, match="key MODEL.STUDENT.CSRA_LAMBDA: removed, the csra head's"):
        setup_cfg("", ["MODEL.STUDENT.CSRA_LAMBDA", 0.5])
