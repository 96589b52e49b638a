"""Wrong inputs and faults: each stops with an error naming the culprit, before training where it
can be seen then, and leaves nothing behind (no checkpoint, no store)."""

import json
import os
import pickle
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from wsd_distill import add_wsd_distill_config
from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data import (
    MultiLabelDatasetMapper,
    load_proposals_into_dataset,
    read_proposals,
    save_proposals,
)
from wsd_distill.data.build import get_multilabel_dataset_dicts
from wsd_distill.data.datasets import register_coco_multilabel
from wsd_distill.data.image_files import read_image_file
from wsd_distill.data.proposals import image_records
from wsd_distill.engine import Trainer, claim_output_dir, run_seed, setup_cfg
from wsd_distill.evaluation import MultiLabelEvaluator
from wsd_distill.utils.partial_run import OutputInUse, open_partial_run, read_chunk, write_chunk

from conftest import ROOT, synthetic_cfg, tool_in_process


def teacher_cfg(output_dir, proposals, *opts):
    """The synthetic teacher on the tiny set, made small, into ``output_dir``."""
    return synthetic_cfg(
        "T-WDet.yaml",
        *("OUTPUT_DIR", str(output_dir), "DATALOADER.NUM_WORKERS", 0),
        *("DATASETS.TRAIN", ("tiny_shapes_train",), "DATASETS.TEST", ("tiny_shapes_test",)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (proposals["train"],)),
        *("DATASETS.PROPOSAL_FILES_TEST", (proposals["test"],)),
        *("MODEL.WSDDN.MAX_PROPOSALS", 16, "SOLVER.IMS_PER_BATCH", 4, *opts),
    )


@pytest.mark.parametrize(
    "opts,error,message",
    [
        (["SOLVER.IMS_PER_BATCH", 0], ValueError, "SOLVER.IMS_PER_BATCH is 0"),
        (["INPUT.MIN_SIZE_TRAIN", (-96,)], ValueError, r"INPUT.MIN_SIZE_TRAIN \(-96,\)"),
        (["MODEL.WSDDN.MAX_PROPOSALS", 0], ValueError, "MODEL.WSDDN.MAX_PROPOSALS is 0: expected"),
        (["DATASETS.PROPOSAL_FILES_TEST", ("nowhere",)], FileNotFoundError, "nowhere does not"),
        (["MODEL.ROI_HEADS.NUM_CLASSES", 5], ValueError, "'tiny_shapes_train' has 12 classes"),
    ],
)
def test_bad_settings_are_refused_before_training(
    datasets_dir, tiny_proposals, tmp_path, opts, error, message
):
    with pytest.raises(error, match=message):
        Trainer(teacher_cfg(tmp_path, tiny_proposals, *opts))
    assert not os.path.exists(tmp_path / "last_checkpoint")


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("MODEL.DISTILL.LABEL_WEIGHT", float("nan"), r"a finite number in \[0, inf\)"),
        ("MODEL.DISTILL.TEMPERATURE", float("inf"), r"a finite number in \(0, inf\)"),
        ("MODEL.DISTILL.TEACHER_TEMPERATURE", float("nan"), "a finite number"),
        ("MODEL.DISTILL.ROI_TOPK", -3, r"an integer in \[0, inf\)"),
        ("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN", 0, "an integer in"),
        ("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", 0, "an integer"),
        ("MODEL.STUDENT.INPUT_SIZE", -64, r"an integer in \[0, inf\)"),
        ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 0, "an integer"),
        ("MODEL.ROI_BOX_HEAD.DROPOUT", 1.5, r"a finite number in \[0, 1\)"),
        ("MODEL.WSDDN.SCORE_EPS", 0.7, r"a finite number in \(0, 0.5\)"),
        ("SOLVER.MAX_ITER", -3, r"an integer in \[1, inf\)"),
        ("SOLVER.MAX_ITER", 0, r"an integer in \[1, inf\)"),
        ("SOLVER.CHECKPOINT_PERIOD", 0, r"an integer in \[1, inf\)"),
        ("SOLVER.BASE_LR", float("nan"), r"a finite number in \[0, inf\)"),
        ("MODEL.DISTILL.TEACHER_WEIGHTS", "", "TEACHER_WEIGHTS is empty"),
    ],
)
def test_settings_are_checked_when_the_config_is_set_up(key, value, expected, tmp_path):
    """setup_cfg (every tool) refuses a setting that would train silently wrong or fail late,
    naming the key and its value; so does Trainer for a config built by hand."""
    config = os.path.join(ROOT, "configs", "Synthetic", "S-Cls_KD.yaml")
    message = f"{re.escape(key)} is {re.escape(repr(value))}: expected {expected}"
    if key == "MODEL.DISTILL.TEACHER_WEIGHTS":
        message = expected
    with pytest.raises(ValueError, match=message):
        setup_cfg(config, [key, value])
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list([key, value, "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(ValueError, match=message):
        Trainer(cfg)


@pytest.mark.parametrize(
    "opts,message",
    [
        (["INPUT.RESIZE", "square", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "range"], "set INPUT.MIN_SI"),
        (["MODEL.PROPOSAL_GENERATOR.NAME", "RPN"], r"is 'RPN': a WSDDN takes 'PrecomputedP"),
        (
            ["MODEL.PROPOSAL_GENERATOR.NAME", "EdgeBoxesProposals"]
            + ["MODEL.WSDDN.SED_MODEL", "model.yml"],
            "MODEL.WSDDN.SED_MODEL 'model.yml' is not a file",
        ),
    ],
)
def test_combinations_and_choices_are_checked_once_at_set_up(opts, message):
    """Where the models and augmentations used to check a choice again, ``check_config`` (every
    tool's set-up, the Trainer's) is the one place."""
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        setup_cfg(os.path.join(ROOT, "configs", "Synthetic", "T-WDet.yaml"), opts)


@pytest.mark.parametrize(
    "opts,message",
    [
        (["SOLVER.MAX_ITER", "5", "--resume"], "--resume comes after the config overrides"),
        (["SOLVER.MAX_ITER", "5", "SOLVER.BASE_LR"], "override SOLVER.BASE_LR has no value"),
    ],
)
def test_options_after_the_overrides_are_named(opts, message):
    with pytest.raises(ValueError, match=message):
        setup_cfg(os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"), opts)


def test_a_diverging_run_leaves_no_poisoned_checkpoint(datasets_dir, tiny_proposals, tmp_path):
    """lr 1e6: the run stops, every checkpoint on disk is finite, and last_checkpoint names one
    of them (before, a model with inf BatchNorm statistics was saved and tagged)."""
    cfg = teacher_cfg(
        tmp_path,
        tiny_proposals,
        "SOLVER.BASE_LR",
        1e6,
        "SOLVER.MAX_ITER",
        30,
        "SOLVER.CHECKPOINT_PERIOD",
        1,
        "SOLVER.WARMUP_ITERS",
        0,
        "DATASETS.TEST",
        (),
        "DATASETS.PROPOSAL_FILES_TEST",
        (),
    )
    trainer = Trainer(cfg)
    with pytest.raises(FloatingPointError):
        trainer.train()
    saved = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    for name in saved:
        weights = torch.load(tmp_path / name, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    if saved:
        assert (tmp_path / "last_checkpoint").read_text().strip() in saved


def test_a_save_cut_by_a_full_disk_leaves_nothing_cut_and_resume_rewrites_the_final(
    datasets_dir, tiny_proposals, tmp_path, monkeypatch
):
    """The disk fills up while model_final.pth is written: no cut file is left, last_checkpoint
    still names the last whole checkpoint; --resume (even beside a 0-byte model_final.pth, as an
    older version left one) writes model_final.pth again from it."""
    no_test = ["DATASETS.TEST", (), "DATASETS.PROPOSAL_FILES_TEST", ()]
    cfg = teacher_cfg(tmp_path, tiny_proposals, "SOLVER.MAX_ITER", 4, *no_test)
    cfg.merge_from_list(["SOLVER.CHECKPOINT_PERIOD", 2, "SOLVER.WARMUP_ITERS", 0])
    save = torch.save

    def full_disk(data, f):
        if "model_final" in f.name:
            f.write(b"\0" * 1000)
            raise OSError(28, "No space left on device")
        return save(data, f)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        Trainer(cfg).train()
    monkeypatch.undo()
    files = os.listdir(tmp_path)
    assert "model_final.pth" not in files and not [f for f in files if ".tmp" in f]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    (tmp_path / "model_final.pth").write_bytes(b"")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 4
    trainer.train()
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 3
    resumed = torch.load(tmp_path / "model_0000003.pth", weights_only=False)["model"]
    assert all(torch.equal(final["model"][k], v) for k, v in resumed.items())


def test_evaluator_refuses_diverged_scores(datasets_dir):
    dataset = "tiny_shapes_test"
    inputs = [{"image_id": i, "multi_labels": torch.eye(12)[i % 12]} for i in range(4)]
    for scores, error, message in [
        ([torch.rand(12), torch.full((12,), float("nan"))] * 2, FloatingPointError, "non-finite"),
        ([torch.full((12,), 0.25)] * 4, ValueError, "all 4 images .* got the same scores"),
    ]:
        evaluator = MultiLabelEvaluator(dataset, distributed=False)
        evaluator.reset()
        evaluator.process(inputs, [{"image_scores": s} for s in scores])
        with pytest.raises(error, match=message):
            evaluator.evaluate()


def test_bad_proposal_pickles_are_named(tmp_path):
    dicts = [{"image_id": 1, "file_name": "a.jpg", "height": 10, "width": 10}]
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pkl is empty"):
        load_proposals_into_dataset(dicts, str(tmp_path / "empty.pkl"))
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({}))
    with pytest.raises(ValueError, match="dict.pkl is not a detectron2 proposal pickle: .*'ids'"):
        load_proposals_into_dataset(dicts, str(tmp_path / "dict.pkl"))
    (tmp_path / "text.pkl").write_bytes(b"hello")
    with pytest.raises(ValueError, match="text.pkl is not a detectron2 proposal pickle"):
        load_proposals_into_dataset(dicts, str(tmp_path / "text.pkl"))
    other = {"ids": [2], "boxes": [np.zeros((1, 4))], "objectness_logits": [np.zeros(1)]}
    (tmp_path / "other.pkl").write_bytes(pickle.dumps(other))
    with pytest.raises(KeyError, match="other.pkl has no proposals for image id '1'"):
        load_proposals_into_dataset(dicts, str(tmp_path / "other.pkl"))


def test_proposals_made_for_other_images_are_refused(datasets_dir, tiny_proposals):
    """Every synthetic split numbers its images from 1: the train split's store must not serve
    the test split (it did, silently, with a lower mAP), nor a pickle made for bigger images."""
    test_images = [d for d in DatasetCatalog.get("tiny_shapes_test") if d["image_id"] <= 24]
    with pytest.raises(ValueError, match=r"records image id 1 with photo bytes \(SHA-1\) [0-9a-f]"):
        load_proposals_into_dataset(test_images, tiny_proposals["train"])
    assert len(load_proposals_into_dataset(test_images, tiny_proposals["train"], False)) == 24
    train_images = DatasetCatalog.get("tiny_shapes_train")
    resized = [dict(d, height=96, width=96) for d in train_images]
    # the same bytes are the same photo (the mapper names a dict of the wrong size); a store
    # of no photo bytes (made before they were recorded) is checked by names and sizes
    assert len(load_proposals_into_dataset(resized, tiny_proposals["train"])) == 24
    unrecorded = os.path.join(os.path.dirname(tiny_proposals["train"]), "names_only")
    ids, boxes, logits = read_proposals(tiny_proposals["train"])
    records = image_records(train_images)
    records["image_sha1s"] = [None] * len(train_images)
    save_proposals(unrecorded, ids, zip(boxes, logits), meta=records)
    with pytest.raises(ValueError, match=r"with size \[192, 192\], this dataset with \[96, 96\]"):
        load_proposals_into_dataset(resized, unrecorded)
    pickle_file = os.path.join(os.path.dirname(tiny_proposals["train"]), "train.pkl")
    ids, boxes, logits = read_proposals(tiny_proposals["train"])
    save_proposals(pickle_file, ids, zip(boxes, logits))
    assert len(load_proposals_into_dataset(train_images, pickle_file)) == 24
    with pytest.raises(ValueError, match="has boxes up to .* which is 96x96: it was made for"):
        load_proposals_into_dataset(resized, pickle_file)


def test_unreadable_training_images_are_named(datasets_dir, tmp_path):
    mapper = MultiLabelDatasetMapper(
        True, augmentations=[], image_format="BGR", num_classes=12, load_proposals=False
    )
    good = DatasetCatalog.get("tiny_shapes_train")[0]
    jpeg = tmp_path / "half.jpg"
    cv2.imwrite(str(jpeg), cv2.imread(good["file_name"]))
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    for name, path in [("missing", tmp_path / "missing.png"), ("truncated", jpeg)]:
        with pytest.raises(OSError, match=re.escape(f"Image 'x-{name}' ({path}) cannot be read")):
            mapper(dict(good, file_name=str(path), image_id=f"x-{name}"))


def test_repeated_ids_and_bad_boxes_are_named_before_anything_reads_them(
    datasets_dir, tiny_proposals, tmp_path
):
    """A json giving one id to two images is refused (COCO tools keep one of them, the other's
    labels going to it); a box of negative width, or not finite, and a missing image are named
    by the loader, by Trainer before training (also for a test set) and by
    tools/check_dataset.py, which lists every bad image and list in one run."""
    for name in ("a", "b", "c", "d"):
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.zeros((20, 30, 3), np.uint8))
    images = [
        {"id": i, "file_name": f"{n}.jpg", "height": 20, "width": 30} for i, n in enumerate("abcd")
    ]
    boxes = [[2, 2, 5, 5], [10, 2, -4, 6], [1, 1, float("nan"), 3], [0, 0, 3, 3]]
    coco = {
        "images": images,
        "annotations": [
            {"id": i + 1, "image_id": i, "category_id": 1, "bbox": box, "area": 1, "iscrowd": 0}
            for i, box in enumerate(boxes)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    os.remove(tmp_path / "d.jpg")
    coco["images"][1]["id"] = 0
    (tmp_path / "ids.json").write_text(json.dumps(coco))
    register_coco_multilabel("faults_repeated_ids", str(tmp_path / "ids.json"), str(tmp_path))
    with pytest.raises(ValueError, match=r"ids.json: image id 0 is given to 2 images \(a.jpg, b"):
        DatasetCatalog.get("faults_repeated_ids")
    register_coco_multilabel("faults_bad_boxes", str(tmp_path / "boxes.json"), str(tmp_path))
    with pytest.raises(ValueError, match=r"image 1 \(.*b.jpg\): box \[10, 2, -4, 6\] \(XYWH_ABS\)"):
        get_multilabel_dataset_dicts(["faults_bad_boxes"])
    missing = f"Dataset 'faults_bad_boxes', image 3: no image file {tmp_path / 'd.jpg'}"
    with pytest.raises(ValueError, match=re.escape(missing)):
        Trainer(
            teacher_cfg(tmp_path / "run", tiny_proposals, "DATASETS.TEST", ("faults_bad_boxes",))
        )
    assert not os.path.exists(tmp_path / "run" / "last_checkpoint")
    (tmp_path / "list.csv").write_text("a.jpg,thing\nb.jpg,thing;nothing\n")
    register = [
        ["faults_bad_list", str(tmp_path / "list.csv"), str(tmp_path), str(tmp_path / "c.txt")],
        ["faults_bad_boxes", str(tmp_path / "boxes.json"), str(tmp_path)],
    ]
    (tmp_path / "c.txt").write_text("thing\n")
    checked = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "check_dataset.py"),
            "--workers",
            "1",
            "--dataset",  # its names, then the overrides
            "faults_bad_list",
            "faults_bad_boxes",
            "DATASETS.REGISTER",
            repr(register),
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1, checked.stderr[-2000:]
    assert "faults_bad_list: cannot be loaded" in checked.stdout
    assert "entry 2 (b.jpg): unknown classes ['nothing']" in checked.stdout
    assert "faults_bad_boxes: 4 images, 3 bad" in checked.stdout
    for culprit in ("b.jpg): box [10, 2, -4, 6]", "c.jpg): box [1, 1, nan, 3]", missing):
        assert culprit in checked.stdout, culprit


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    ramp = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
    cv2.imwrite(str(tmp_path / "deep.png"), ramp)
    image = read_image_file(str(tmp_path / "deep.png"), "BGR")
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    np.testing.assert_allclose(image[:, :, 0], ramp / 257.0, atol=0.51)
    assert (image[:, :, 0] == image[:, :, 2]).all()


def test_a_float_tiff_or_a_cut_image_is_named_not_read_as_black(tmp_path):
    """A float32 TIFF has no known range (it was scored all black): refused, naming it; a cut
    file's size is asked: an OSError naming it."""
    from PIL import Image

    from wsd_distill.data.image_files import image_size

    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float.tif is a floating-point image"):
        read_image_file(str(tmp_path / "float.tif"), "BGR")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(OSError, match=r"cut.jpg cannot be read as an image"):
        image_size(str(tmp_path / "cut.jpg"))


def test_one_output_one_job_and_a_run_that_wrote_nothing_gives_way(tmp_path):
    """A second job on an output while the first is alive is refused, naming its process; a
    dead job's lock is taken over; a manifest with no chunk written (a run that failed at its
    start) is replaced by a run with other settings, one with chunks is not."""
    output, partial = str(tmp_path / "out"), tmp_path / "out.partial"
    open_partial_run(output, {"a": 1}, 10, 5)
    (partial / "lock").write_text(str(os.getppid()))  # a live process: pytest's parent
    with pytest.raises(RuntimeError, match=f"being written by process {os.getppid()}"):
        open_partial_run(output, {"a": 1}, 10, 5)
    (partial / "lock").write_text("999999999")  # no such process
    chunks = open_partial_run(output, {"a": 2}, 10, 5)
    assert (partial / "lock").read_text() == str(os.getpid()) and len(chunks) == 2
    (partial / "chunk_000000.npz").write_bytes(b"done")
    with pytest.raises(RuntimeError, match="holds an unfinished run with other settings"):
        open_partial_run(output, {"a": 3}, 10, 5)


def test_a_damaged_chunk_is_made_again_on_resume_and_named_when_read(tmp_path, caplog):
    """Chunks cut short or with a flipped bit since they were written are removed when the job
    resumes (so they are made again), the sound one kept; reading a damaged one names it."""
    output = str(tmp_path / "out")
    chunks = open_partial_run(output, {"a": 1}, 30, 10)
    for path, s, e in chunks:
        rows = {"boxes": [np.full((3, 4), i, np.float32) for i in range(s, e)]}
        write_chunk(path, {"ids": np.arange(s, e)}, rows)
    sound, cut, flipped = (path for path, _, _ in chunks)
    data = bytearray(open(flipped, "rb").read())
    data[len(data) // 2] ^= 1
    open(flipped, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=re.escape(f"Chunk {flipped} cannot be read")):
        read_chunk(flipped, ("ids",), ("boxes",))
    open(cut, "r+b").truncate(os.path.getsize(cut) // 2)
    with caplog.at_level("WARNING"):
        assert open_partial_run(output, {"a": 1}, 30, 10) == chunks
    assert os.path.exists(sound) and not os.path.exists(cut) and not os.path.exists(flipped)
    assert f"{cut} is damaged" in caplog.text and f"{flipped} is damaged" in caplog.text
    assert read_chunk(sound, ("ids",), ("boxes",))[4][1].tolist() == [[4.0] * 4] * 3


@pytest.mark.parametrize("fault", ["outside", "nan", "inf score"])
def test_proposals_outside_their_image_or_not_finite_are_named(datasets_dir, tmp_path, fault):
    dicts = DatasetCatalog.get("tiny_shapes_train")[:2]
    box = [10.0, 10.0, 700.0, 50.0] if fault == "outside" else [10.0, float("nan"), 30.0, 50.0]
    box = [10.0, 10.0, 30.0, 50.0] if fault == "inf score" else box
    scores = np.array([0.0, np.inf if fault == "inf score" else 0.0])
    proposals = [(np.array([[1.0, 1.0, 20.0, 20.0], box], np.float32), scores)] * 2
    save_proposals(str(tmp_path / "store"), [d["image_id"] for d in dicts], proposals)
    dicts = load_proposals_into_dataset(dicts, str(tmp_path / "store"), check_images=False)
    mapper = MultiLabelDatasetMapper(
        True, augmentations=[], image_format="BGR", num_classes=12, load_proposals=True
    )
    message = (
        "reach .* to \\(700, 50\\) in a 192x192 image" if fault == "outside" else "not all finite"
    )
    with pytest.raises(ValueError, match=f"store, image id {dicts[0]['image_id']!r} .*{message}"):
        mapper(dicts[0])


@pytest.mark.parametrize(
    "tool,argv",
    [
        ("generate_proposals.py", ["--dataset", "x", "--output", "y", "--chunk-size", "0"]),
        ("generate_proposals.py", ["--dataset", "x", "--output", "y", "--max-proposals", "-5"]),
        ("cache_teacher.py", ["--config-file", "c.yaml", "--output", "y", "--batch-size", "0"]),
        ("predict.py", ["--config-file", "c", "--input", "i", "--output", "o", "--workers", "-1"]),
    ],
)
def test_tool_arguments_are_checked_before_anything_is_written(tool, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, stderr = tool_in_process(tool, *argv)
    assert status == 2 and "expected an integer >=" in stderr, stderr[-500:]
    assert os.listdir(tmp_path) == []


def test_an_image_the_resize_cannot_handle_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "thin.png"), np.zeros((2000, 4, 3), np.uint8))
    mapper = MultiLabelDatasetMapper(
        True,
        augmentations=[T.ResizeShortestEdge(112, 128)],
        image_format="BGR",
        num_classes=2,
        load_proposals=False,
    )
    record = {"image_id": 7, "file_name": str(tmp_path / "thin.png"), "multi_labels": [0]}
    with pytest.raises(ValueError, match=r"Image 7 \(.*thin.png\), 2000x4, cannot be resized"):
        mapper(record)


def test_proposal_generation_lists_every_bad_image_and_keeps_the_rest(datasets_dir, tmp_path):
    images = DatasetCatalog.get("tiny_shapes_train")[:6]
    jpeg = tmp_path / "half.jpg"
    cv2.imwrite(str(jpeg), cv2.imread(images[1]["file_name"]))
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    images[1] = dict(images[1], file_name=str(jpeg))
    images[4] = dict(images[4], file_name=str(tmp_path / "missing.png"))
    images[5] = dict(images[5], height=100)  # EXIF-rotated or resized since annotated
    output = str(tmp_path / "proposals")
    with pytest.raises(OSError, match="3 images of 6 could not be used") as error:
        generate_proposal_file(images, output, "edge_boxes", {"max_proposals": 20}, chunk_size=2)
    for image_id in (images[1]["image_id"], images[4]["image_id"], images[5]["image_id"]):
        assert f"Image {image_id!r}" in str(error.value)
    assert (
        "is 192x192 (height x width, after its EXIF orientation) but the dataset says 100x192"
        in str(error.value)
    )
    assert not os.path.exists(output)
    partial = sorted(os.listdir(output + ".partial"))
    assert partial == ["chunk_000001.npz", "lock", "manifest.json"]  # (the lock of this process)


def test_train_net_keeps_a_finished_run_unless_resumed(tmp_path):
    """Rerun without --resume into a finished run, train_net refuses before writing anything
    (detectron2 would overwrite its model_final.pth and its config.yaml)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_final.pth").write_bytes(b"the weights")
    (run / "config.yaml").write_text("SEED: 3\n")
    argv = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file"]
    argv += [os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"), "OUTPUT_DIR", str(run)]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == (
        f"train_net.py: error: {run} holds a finished run (model_final.pth): add --resume to "
        "continue it (a finished one is evaluated again), give another OUTPUT_DIR, or delete "
        "the folder to train it again"
    )
    assert (run / "model_final.pth").read_bytes() == b"the weights"
    assert (run / "config.yaml").read_text() == "SEED: 3\n" and not (run / "lock").exists()


def test_one_training_per_output_dir_and_resumed_only_with_its_settings(
    datasets_dir, tiny_proposals, tmp_path
):
    cfg = teacher_cfg(tmp_path, tiny_proposals)
    (tmp_path / "lock").write_text(str(os.getppid()))  # a live process: pytest's parent
    with pytest.raises(OutputInUse, match=f"being written by process {os.getppid()}"):
        claim_output_dir(cfg, resume=False)
    (tmp_path / "lock").write_text("999999999")  # a process that has ended: taken over
    assert open(claim_output_dir(cfg, resume=False)).read() == str(os.getpid())
    (tmp_path / "config.yaml").write_text(cfg.dump())
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(ValueError, match="holds a started run \\(last_checkpoint\\)"):
        claim_output_dir(cfg, resume=False)
    claim_output_dir(cfg, resume=True)  # the same settings
    cfg.SOLVER.BASE_LR *= 2
    with pytest.raises(ValueError, match="trained with other settings:\n  SOLVER.BASE_LR"):
        claim_output_dir(cfg, resume=True)


def test_a_negative_seed_is_drawn_once_and_resumed(tmp_path):
    """train_net draws SEED -1's seed when a run starts, records it in config.yaml, and a resume
    takes it from there (the same data stream: an exact resume)."""
    cfg = add_wsd_distill_config(get_cfg())
    cfg.OUTPUT_DIR = str(tmp_path)
    drawn = run_seed(cfg)
    assert 0 <= drawn < 2**31
    cfg.SEED = 1234
    (tmp_path / "config.yaml").write_text(cfg.dump())
    cfg.SEED = -1
    assert run_seed(cfg) == 1234


def test_a_refusal_is_one_message_without_traceback(tmp_path, monkeypatch):
    """A tool refusing its input exits 2 with one line naming the culprit, as argparse does
    (WSD_DISTILL_TRACEBACK=1 shows the traceback)."""
    argv = [sys.executable, os.path.join(ROOT, "tools", "distill.py"), "--train", "nope"]
    argv += ["--test", "nope_test"]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("distill.py: error: Dataset 'nope' is not registered")
    )
    missing = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file"]
    out = subprocess.run([*missing, str(tmp_path / "x.yaml")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == (
        f"train_net.py: error: No config file {tmp_path / 'x.yaml'}"
    )
    monkeypatch.setenv("WSD_DISTILL_TRACEBACK", "1")
    with pytest.raises(KeyError, match="Dataset 'nope' is not registered"):
        tool_in_process("distill.py", *argv[2:])


def test_training_says_its_progress_at_least_every_minute(monkeypatch, caplog):
    """detectron2 writes every 20 iterations (12 minutes apart at 36 s an iteration, as the KD
    student on a busy machine): ProgressHook adds a line, with the minutes left, whenever a
    minute passed without one."""
    from types import SimpleNamespace

    from wsd_distill.engine import progress_hook

    clock = [0.0]
    monkeypatch.setattr(progress_hook.time, "perf_counter", lambda: clock[0])
    hook = progress_hook.ProgressHook(seconds=60)
    hook.trainer = SimpleNamespace(start_iter=10, iter=10, max_iter=100)
    hook.before_train()
    lines = []
    with caplog.at_level("INFO", logger="wsd_distill.engine.progress_hook"):
        for step in range(10, 25):
            clock[0] += 36.0  # seconds an iteration
            hook.trainer.iter = step
            hook.after_step()
            lines.append(len(caplog.records))
    # lines at iterations 12 (72 s in), 14, 16 and 18; detectron2's at 20; then 22 and 24
    assert lines == [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 6, 6]
    assert caplog.records[0].getMessage() == (
        "iteration 12/100: 36.0 s per iteration, about 53 min left"
    )
