"""Dataset loaders on small files written in the official formats, and the synthetic generator."""

import argparse
import json
import os
import runpy

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from wsd_distill import add_wsd_distill_config
from wsd_distill.data import get_multilabel_dataset_dicts, num_classes_of
from wsd_distill.data.datasets import (
    NUSWIDE_CONCEPTS,
    SHAPE_CLASSES,
    generate_synthetic_shapes,
    load_nuswide,
    load_voc_multilabel,
    prepare_synthetic_shapes,
    register_coco_multilabel,
    register_synthetic_shapes,
)
from wsd_distill.data.datasets.synthetic import CO_OCCURRING, render_image
from wsd_distill.data.statistics import dataset_summary
from wsd_distill.engine import Trainer, setup_cfg

from conftest import ROOT, write_coco


def test_coco_labels_from_every_annotation_crowd_included(tmp_path):
    """As ML-GCN, ASL and Query2Label: crowd annotations give labels, a polygon detectron2
    rejects still gives its label, images without any annotation are dropped from training and
    evaluation alike; include_crowd=False keeps the other behaviour."""
    json_file = tmp_path / "instances.json"
    write_coco(json_file)
    register_coco_multilabel("test_coco_gaps", str(json_file), str(tmp_path))
    dicts = DatasetCatalog.get("test_coco_gaps")
    assert MetadataCatalog.get("test_coco_gaps").thing_classes == ["person", "car", "train"]
    labels = {d["image_id"]: d["multi_labels"] for d in dicts}
    # ids 1, 3, 7 -> contiguous 0, 1, 2
    assert labels == {10: [0, 1, 2], 20: [1], 30: [0], 40: []}
    by_id = {d["image_id"]: d for d in dicts}
    assert [a["iscrowd"] for a in by_id[10]["annotations"]] == [0, 0, 1]  # boxes for CorLoc
    assert by_id[30]["annotations"] == []  # detectron2 dropped the polygon, not the label
    assert len(get_multilabel_dataset_dicts("test_coco_gaps", filter_unlabeled=True)) == 3
    assert len(get_multilabel_dataset_dicts("test_coco_gaps", filter_unlabeled=False)) == 4
    register_coco_multilabel("test_coco_no_crowd", str(json_file), str(tmp_path), None, False)
    labels = {d["image_id"]: d["multi_labels"] for d in DatasetCatalog.get("test_coco_no_crowd")}
    assert labels == {10: [0, 2], 20: [], 30: [0], 40: []}


def test_a_dataset_without_any_label_is_named_with_the_key_that_drops_its_images(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    image = {"file_name": str(tmp_path / "a.jpg"), "image_id": 1, "multi_labels": []}
    DatasetCatalog.register("test_unlabelled", lambda: [image])
    with pytest.raises(ValueError, match=r"test_unlabelled.*DATALOADER.FILTER_EMPTY_ANNOTATIONS"):
        get_multilabel_dataset_dicts("test_unlabelled")
    assert len(get_multilabel_dataset_dicts("test_unlabelled", filter_unlabeled=False)) == 1


def test_coco_classes_come_from_the_json_and_a_mismatch_is_named(tmp_path):
    json_file = tmp_path / "instances.json"
    write_coco(json_file)
    register_coco_multilabel("test_coco_unnamed", str(json_file), str(tmp_path))
    assert "thing_classes" not in MetadataCatalog.get("test_coco_unnamed").as_dict()
    assert num_classes_of("test_coco_unnamed") == 3  # read from the json
    register_coco_multilabel(
        "test_coco_other", str(json_file), str(tmp_path), {"thing_classes": ["a", "car"]}
    )
    with pytest.raises(ValueError, match=r"2 thing_classes but .*instances.json has 3.*'a'"):
        DatasetCatalog.get("test_coco_other")


def test_an_annotation_of_an_unknown_category_is_named(tmp_path):
    json_file = tmp_path / "instances.json"
    write_coco(json_file)
    data = json.loads(json_file.read_text())
    data["annotations"][1]["category_id"] = 5
    json_file.write_text(json.dumps(data))
    register_coco_multilabel("test_coco_unknown_category", str(json_file), str(tmp_path))
    with pytest.raises(
        ValueError, match=r"instances.json: annotation 2 \(image 10\) has category_id 5"
    ):
        DatasetCatalog.get("test_coco_unknown_category")


def test_unlabeled_images_are_dropped_from_training_and_test_alike(tmp_path):
    json_file = tmp_path / "instances.json"
    write_coco(json_file)
    register_coco_multilabel("test_coco_loaders", str(json_file), str(tmp_path))
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(os.path.join(ROOT, "configs", "Base-S-Cls.yaml"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("test_coco_loaders",), ("test_coco_loaders",)
    cfg.MODEL.STUDENT.NUM_CLASSES, cfg.DATALOADER.NUM_WORKERS = 3, 0
    for keep, count in ((True, 3), (False, 4)):
        cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = keep
        assert len(Trainer.build_test_loader(cfg, "test_coco_loaders").dataset) == count


def _write_nuswide_official(root, labels_by_path, existing):
    (root / "ImageList").mkdir(parents=True)
    (root / "Groundtruth" / "TrainTestLabels").mkdir(parents=True)
    (root / "ConceptsList").mkdir()  # as in the official archive
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(NUSWIDE_CONCEPTS) + "\n")
    paths = list(labels_by_path)
    (root / "ImageList" / "TrainImagelist.txt").write_text(
        "\n".join(p.replace("/", "\\") for p in paths) + "\n"
    )
    for concept in NUSWIDE_CONCEPTS:
        column = [int(concept in labels_by_path[p]) for p in paths]
        (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_Train.txt").write_text(
            "\n".join(map(str, column)) + "\n"
        )
    for p in existing:
        (root / "Flickr" / p).parent.mkdir(parents=True, exist_ok=True)
        (root / "Flickr" / p).write_bytes(b"")


def test_nuswide_official_layout_counts_missing_images(tmp_path):
    labels = {
        "actor/0001_11.jpg": {"sky", "clouds"},
        "actor/0002_22.jpg": {"zebra"},
        "beach/0003_33.jpg": {"beach"},
    }
    _write_nuswide_official(tmp_path, labels, existing=["actor/0001_11.jpg", "beach/0003_33.jpg"])
    dicts = load_nuswide(str(tmp_path), "train", dataset_name="test_nuswide_official")
    assert [d["image_id"] for d in dicts] == ["0001_11", "0003_33"]
    idx = NUSWIDE_CONCEPTS.index
    assert dicts[0]["multi_labels"] == sorted([idx("sky"), idx("clouds")])
    assert dicts[1]["multi_labels"] == [idx("beach")]
    assert dicts[0]["file_name"] == os.path.join(str(tmp_path), "Flickr", "actor", "0001_11.jpg")
    assert MetadataCatalog.get("test_nuswide_official").missing_images == 1
    # some copies keep the concept list at the root; a list that differs is named
    (tmp_path / "ConceptsList" / "Concepts81.txt").rename(tmp_path / "Concepts81.txt")
    (tmp_path / "ConceptsList").rmdir()
    assert len(load_nuswide(str(tmp_path), "train")) == 2
    (tmp_path / "Concepts81.txt").write_text("sky\n")
    with pytest.raises(ValueError, match=r"Concepts81.txt lists 1 concepts that differ"):
        load_nuswide(str(tmp_path), "train")


def test_nuswide_label_file_of_wrong_length_is_named(tmp_path):
    _write_nuswide_official(tmp_path, {"a/1.jpg": {"sky"}}, existing=["a/1.jpg"])
    (tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt").write_text("1\n0\n")
    with pytest.raises(ValueError, match="Labels_sky_Train.txt has 2 lines, expected 1"):
        load_nuswide(str(tmp_path), "train")


def test_nuswide_csv_and_json_lists(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("1.jpg", "2.jpg"):
        (tmp_path / "images" / name).write_bytes(b"")
    (tmp_path / "train.csv").write_text(
        "path,labels\nimages/1.jpg,sky;water\nimages/2.jpg,\nimages/3.jpg,dog\n"
    )
    dicts = load_nuswide(str(tmp_path), "train")
    assert [d["multi_labels"] for d in dicts] == [
        sorted([NUSWIDE_CONCEPTS.index("sky"), NUSWIDE_CONCEPTS.index("water")]),
        [],
    ]
    (tmp_path / "test.json").write_text(json.dumps([{"path": "images/2.jpg", "labels": ["dog"]}]))
    assert load_nuswide(str(tmp_path), "test")[0]["multi_labels"] == [NUSWIDE_CONCEPTS.index("dog")]
    (tmp_path / "test.json").write_text(
        json.dumps([{"path": "images/2.jpg", "labels": ["unicorn"]}])
    )
    with pytest.raises(
        ValueError, match=r"entry 1 \(images/2.jpg\): unknown concepts \['unicorn'\]"
    ):
        load_nuswide(str(tmp_path), "test")


VOC_XML = """<annotation><filename>{id}.jpg</filename>
<size><width>200</width><height>150</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>
<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"""


def test_voc_multilabel_keeps_boxes_and_difficult(tmp_path):
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    objects = {
        "000001": [("dog", 0, (10, 20, 110, 120)), ("person", 1, (1, 1, 50, 80))],
        "000002": [("dog", 0, (5, 5, 60, 60))],
    }
    for file_id, objs in objects.items():
        xml = VOC_XML.format(
            id=file_id,
            objects="".join(VOC_OBJECT.format(name=n, difficult=d, box=b) for n, d, b in objs),
        )
        (tmp_path / "Annotations" / f"{file_id}.xml").write_text(xml)
    dicts = load_voc_multilabel(str(tmp_path), "test")
    classes = MetadataCatalog.get("voc_2007_test_multilabel").thing_classes
    assert dicts[0]["multi_labels"] == sorted([classes.index("dog"), classes.index("person")])
    assert dicts[0]["annotations"][0]["bbox"] == [
        9.0,
        19.0,
        110.0,
        120.0,
    ]  # 1-based inclusive -> XYXY_ABS
    assert [a["difficult"] for a in dicts[0]["annotations"]] == [0, 1]
    # person is only difficult in 000001: a positive for training, left out of the test AP
    assert dicts[0]["ignored_labels"] == [classes.index("person")]
    assert dicts[1]["ignored_labels"] == []
    assert (dicts[1]["height"], dicts[1]["width"]) == (150, 200)
    (tmp_path / "Annotations" / "000002.xml").write_text(
        VOC_XML.format(
            id="000002", objects=VOC_OBJECT.format(name="cup", difficult=0, box=(1, 1, 9, 9))
        )
    )
    with pytest.raises(ValueError, match="000002.xml: unknown class 'cup': not one of VOC's 20"):
        load_voc_multilabel(str(tmp_path), "test")
    with pytest.raises(ValueError, match="unknown class 'cup': not one of the class file's 2"):
        load_voc_multilabel(str(tmp_path), "test", ["dog", "person"])


def test_synthetic_generation_is_deterministic(tmp_path):
    sizes = {"train": 3, "val": 1, "test": 1}
    a = generate_synthetic_shapes(str(tmp_path / "a"), sizes, 96, seed=5)
    b = generate_synthetic_shapes(str(tmp_path / "b"), sizes, 96, seed=5)
    c = generate_synthetic_shapes(str(tmp_path / "c"), sizes, 96, seed=6)
    for rel in ("train/000001.jpg", "train/000003.jpg", "annotations/instances_train.json"):
        assert open(os.path.join(a, rel), "rb").read() == open(os.path.join(b, rel), "rb").read()
    assert (
        open(os.path.join(a, "train/000001.jpg"), "rb").read()
        != open(os.path.join(c, "train/000001.jpg"), "rb").read()
    )
    assert generate_synthetic_shapes(a, sizes, 96, seed=5) == a  # already there: nothing rewritten
    with pytest.raises(RuntimeError, match="generated with"):
        generate_synthetic_shapes(a, sizes, 96, seed=6)
    # a config uses a folder made with other sizes and seed as it is
    register_synthetic_shapes(a, prefix="synthetic_shapes_seed5")
    cfg = add_wsd_distill_config(get_cfg())
    cfg.DATASETS.TRAIN = ("synthetic_shapes_seed5_train",)
    assert prepare_synthetic_shapes(cfg) == a
    assert len(DatasetCatalog.get("synthetic_shapes_seed5_train")) == sizes["train"]


def test_synthetic_benchmark_properties():
    """Many small objects, 1-4 per image, every class present, and the listed pairs co-occur."""
    images = [render_image(np.random.default_rng([0, 0, i]), 256) for i in range(300)]
    dicts = [
        {
            "multi_labels": sorted({c for c, _ in objs}),
            "height": 256,
            "width": 256,
            "annotations": [{"bbox": box, "bbox_mode": 0} for _, box in objs],
        }
        for _, objs in images
    ]
    counts = [len(objs) for _, objs in images]
    assert min(counts) >= 1 and max(counts) == 4
    summary = dataset_summary(dicts, SHAPE_CLASSES)
    assert len(SHAPE_CLASSES) >= 10 and (summary["class_images"] > 0).all()
    assert summary["small_object_fraction"] > 0.6  # most objects cover under 10% of the image
    freq = summary["class_images"] / len(dicts)
    lift = (
        summary["co_occurrence"]
        / np.outer(summary["class_images"], summary["class_images"])
        * len(dicts)
    )
    for a, b in CO_OCCURRING:
        i, j = SHAPE_CLASSES.index(a), SHAPE_CLASSES.index(b)
        assert lift[i, j] > 1.5, (a, b, lift[i, j])
    assert freq.max() / freq.min() > 2  # long-tailed class prior


def test_tiny_synthetic_set_is_registered(datasets_dir):
    dicts = DatasetCatalog.get("tiny_shapes_train")
    assert len(dicts) == 24 and all(d["multi_labels"] for d in dicts)
    assert os.path.exists(dicts[0]["file_name"])
    assert MetadataCatalog.get("tiny_shapes_train").thing_classes == list(SHAPE_CLASSES)


def test_prepare_ade20k_labels_boxes_threshold_and_range(tmp_path):
    """datasets/prepare_ade20k.py on generated masks: a class is present from --min-pixels on
    (the padding and class 0 never), each 8-connected piece of --min-box-pixels a box, touching
    pieces one box; photos 7-10 split by number (7 val, 8 and 9 test, 10 train), 11 left out;
    the COCO jsons load as the project's datasets, boxes and all."""
    prepare = runpy.run_path(os.path.join(ROOT, "datasets", "prepare_ade20k.py"))
    images, masks = tmp_path / "ade20k", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    mask = {n: np.zeros((512, 512), np.uint8) for n in range(7, 12)}
    mask[7][:100] = 255  # padding: not a class
    mask[7][200:240, 200:240] = 4  # 1600 pixels: floor
    mask[7][300:330, 300:330] = 13  # 900: person, below 1024
    mask[8][0:40, 0:20], mask[8][0:40, 20:40] = 13, 13  # two touching halves: one box
    mask[8][100:120, 100:120] = 13  # 400: a box of its own
    mask[8][300:310, 300:310] = 13  # 100: a label's pixels, no box (under 256)
    mask[10][0:32, 480:512] = 150  # 1024 exactly: flag
    mask[11][:] = 1  # outside the range
    for n, m in mask.items():
        m.tofile(masks / f"ADE_val_{n:08d}.raw")
        cv2.imwrite(str(images / f"ADE_val_{n:08d}.jpg"), np.zeros((512, 512, 3), np.uint8))
    args = dict(images=str(images), masks=str(masks), output=str(tmp_path / "out"), first=7)
    args.update(last=10, min_pixels=1024, min_box_pixels=256, labelled_every=0)
    prepare["main"](argparse.Namespace(**args))
    splits = {
        s: json.loads((tmp_path / "out" / f"{s}.json").read_text()) for s in prepare["SPLITS"]
    }
    assert {s: [i["id"] for i in d["images"]] for s, d in splits.items()} == {
        "train": [10],
        "val": [7],
        "test": [8, 9],
    }
    assert len(splits["val"]["categories"]) == 150
    assert splits["val"]["categories"][3]["name"] == "floor"
    boxes = {
        s: [(a["image_id"], a["category_id"], a.get("bbox")) for a in d["annotations"]]
        for s, d in splits.items()
    }
    assert boxes["val"] == [(7, 4, [200, 200, 40, 40])]
    assert boxes["test"] == [(8, 13, [0, 0, 40, 40]), (8, 13, [100, 100, 20, 20])]
    assert boxes["train"] == [(10, 150, [480, 0, 32, 32])]
    objects = (tmp_path / "out" / "object_classes.txt").read_text().splitlines()
    stuff = (tmp_path / "out" / "stuff_classes.txt").read_text().splitlines()
    assert len(objects) == 100 and len(stuff) == 50 and "person" in objects and "sky" in stuff
    # read by the project's COCO loader: labels, boxes, and the photo without labels
    register_coco_multilabel("ade_generated_test", str(tmp_path / "out" / "test.json"), str(images))
    records = {r["image_id"]: r for r in DatasetCatalog.get("ade_generated_test")}
    assert records[8]["multi_labels"] == [12] and len(records[8]["annotations"]) == 2
    assert records[9]["multi_labels"] == []
    os.remove(masks / "ADE_val_00000009.raw")
    with pytest.raises(FileNotFoundError, match="Photo 9: no file .*ADE_val_00000009.raw"):
        prepare["main"](argparse.Namespace(**args))


def test_a_class_name_given_to_two_classes_is_refused(tmp_path):
    """Two COCO categories of one name would share one AP-<name> in every evaluation: refused
    when a config is set up on the dataset, naming it and the name."""
    json_file = tmp_path / "instances.json"
    write_coco(json_file)
    coco = json.loads(json_file.read_text())
    coco["categories"][2]["name"] = "person"
    json_file.write_text(json.dumps(coco))
    opts = ["DATASETS.REGISTER", repr([["twice_named", str(json_file), str(tmp_path)]])]
    opts += ["DATASETS.TRAIN", "('twice_named',)"]
    with pytest.raises(ValueError, match=r"CLASS_NAMES \(of twice_named\) repeats \['person'\]"):
        setup_cfg(os.path.join(ROOT, "configs", "OwnData", "S-Cls.yaml"), opts)


def test_prepare_ade20k_labelled_split_every_kth_training_photo():
    """--labelled-every 3 on 7 training photos: the 1st, 4th and 7th labelled, each half with
    its own annotations and all the categories."""
    prepare = runpy.run_path(os.path.join(ROOT, "datasets", "prepare_ade20k.py"))
    ids = [1, 2, 3, 4, 5, 6, 10]
    train = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in ids],
        "annotations": [{"id": k, "image_id": i, "category_id": 1} for k, i in enumerate(ids)],
        "categories": [{"id": 1, "name": "wall"}],
    }
    labelled, unlabeled = prepare["labelled_split"](train, 3)
    assert [i["id"] for i in labelled["images"]] == [1, 4, 10]
    assert [a["image_id"] for a in labelled["annotations"]] == [1, 4, 10]
    assert [i["id"] for i in unlabeled["images"]] == [2, 3, 5, 6]
    assert [a["image_id"] for a in unlabeled["annotations"]] == [2, 3, 5, 6]
    assert labelled["categories"] == unlabeled["categories"] == train["categories"]
