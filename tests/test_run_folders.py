"""A finished run's folder (config.yaml + model_final.pth) names a trained model wherever weights
are asked for; class names and counts come from the data; trained weights load strictly."""

import os
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from wsd_distill.checkpoint import load_trained_weights
from wsd_distill.engine import Trainer, setup_cfg, setup_run_cfg
from wsd_distill.engine.defaults import RUN_CONFIG, RUN_WEIGHTS

from conftest import ROOT

SYNTHETIC = os.path.join(ROOT, "configs", "Synthetic")
OWN = os.path.join(ROOT, "configs", "OwnData")


def fake_run(folder, config, *opts):
    """A run folder as training leaves it: the config as run, weights with random values."""
    cfg = setup_cfg(os.path.join(SYNTHETIC, config), ["MODEL.DEVICE", "cpu", *opts])
    os.makedirs(folder, exist_ok=True)
    (folder / RUN_CONFIG).write_text(cfg.dump())
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), str(folder)).save("model_final")
    return cfg


def test_a_run_folder_names_its_config_and_weights(tmp_path):
    fake_run(tmp_path / "teacher", "T-WDet.yaml")
    fake_run(tmp_path / "stage1", "S-Cls.yaml")
    teacher = str(tmp_path / "teacher")
    cfg = setup_cfg(
        os.path.join(SYNTHETIC, "S-Cls_KD_stage2.yaml"),
        ["MODEL.DISTILL.TEACHER_CONFIG", teacher, "MODEL.WEIGHTS", str(tmp_path / "stage1")],
    )
    d = cfg.MODEL.DISTILL
    # the config file's TEACHER_WEIGHTS (another run's) give way to the folder's own
    assert (d.TEACHER_CONFIG, d.TEACHER_WEIGHTS) == (
        os.path.join(teacher, RUN_CONFIG),
        os.path.join(teacher, RUN_WEIGHTS),
    )
    assert cfg.MODEL.WEIGHTS == str(tmp_path / "stage1" / RUN_WEIGHTS)
    # ... unless they name a checkpoint of that run
    periodic = os.path.join(teacher, "model_0000099.pth")
    opts = ["MODEL.DISTILL.TEACHER_CONFIG", teacher, "MODEL.DISTILL.TEACHER_WEIGHTS", periodic]
    cfg = setup_cfg(os.path.join(SYNTHETIC, "S-Cls_KD.yaml"), opts)
    assert cfg.MODEL.DISTILL.TEACHER_WEIGHTS == periodic
    # a tool's --config-file: the folder, or its config.yaml, brings the run's weights
    for path in (teacher, os.path.join(teacher, RUN_CONFIG)):
        assert setup_run_cfg(path).MODEL.WEIGHTS == os.path.join(teacher, RUN_WEIGHTS)
    assert setup_run_cfg(teacher, ["MODEL.WEIGHTS", "x.pth"]).MODEL.WEIGHTS == "x.pth"


def test_unfinished_or_wrong_run_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty is a folder without config.yaml"):
        setup_run_cfg(str(tmp_path / "empty"))
    fake_run(tmp_path / "unfinished", "S-Cls.yaml")
    os.remove(tmp_path / "unfinished" / RUN_WEIGHTS)
    with pytest.raises(FileNotFoundError, match="unfinished has no model_final.pth: its training"):
        setup_cfg(
            os.path.join(SYNTHETIC, "S-Cls_KD.yaml"),
            ["MODEL.DISTILL.TEACHER_CONFIG", str(tmp_path / "unfinished")],
        )


def test_class_names_and_counts_come_from_the_training_set():
    cfg = setup_cfg(
        os.path.join(OWN, "S-Cls.yaml"), ["DATASETS.TRAIN", "('synthetic_shapes_train',)"]
    )
    assert len(cfg.MODEL.CLASS_NAMES) == 12 and cfg.MODEL.CLASS_NAMES[0] == "circle"
    assert cfg.MODEL.STUDENT.NUM_CLASSES == 12
    with pytest.raises(ValueError, match=r"MODEL.ROI_HEADS.NUM_CLASSES is 0 \(the training set's"):
        setup_cfg(os.path.join(OWN, "T-WDet.yaml"))
    with pytest.raises(ValueError, match="MODEL.STUDENT.NUM_CLASSES is 5 but MODEL.CLASS_NAMES"):
        setup_cfg(os.path.join(SYNTHETIC, "S-Cls.yaml"), ["MODEL.STUDENT.NUM_CLASSES", 5])
    cfg = setup_cfg(os.path.join(OWN, "T-WDet.yaml"), ["MODEL.CLASS_NAMES", "['a', 'b']"])
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2  # no dataset needed when the config names them


def test_trained_weights_load_strictly(tmp_path):
    fake_run(tmp_path / "teacher", "T-WDet.yaml")
    student = build_model(setup_cfg(os.path.join(SYNTHETIC, "S-Cls.yaml"), ["MODEL.DEVICE", "cpu"]))
    weights = str(tmp_path / "teacher" / RUN_WEIGHTS)
    with pytest.raises(ValueError, match=r"does not fit the model of this config: \d+ missing"):
        load_trained_weights(student, weights)
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS: no such file 'nope.pth'"):
        load_trained_weights(student, "nope.pth")
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty: name the trained model's"):
        load_trained_weights(student, "")  # the synthetic configs' value: not a random model
    (tmp_path / "cut.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="cut.pth' cannot be read .*: a file cut short"):
        load_trained_weights(student, str(tmp_path / "cut.pth"))
    teacher = build_model(setup_run_cfg(str(tmp_path / "teacher")))
    extra = load_trained_weights(teacher, weights)
    assert "model" not in extra


def test_a_feature_only_stage_is_not_evaluated(tmp_path, caplog):
    cfg = setup_cfg(
        os.path.join(SYNTHETIC, "S-Cls_KD_stage1.yaml"),
        ["DATASETS.TEST", "('synthetic_shapes_test',)", "MODEL.DEVICE", "cpu"],
    )
    with caplog.at_level("INFO"):
        assert Trainer.test(cfg, model=None) == {}
    assert "Not evaluated: L_f alone (the authors' stage 1) trains no classifier" in caplog.text


def test_stage_two_starts_from_a_whole_student_only(datasets_dir, tiny_proposals, tmp_path):
    """Stage 2 (L_f off, MODEL.WEIGHTS set) from a teacher's checkpoint is refused, naming the
    key; from stage 1's student it starts (a learned 1/t may be missing: it is new)."""
    fake_run(tmp_path / "teacher", "T-WDet.yaml")
    fake_run(tmp_path / "stage1", "S-Cls.yaml")
    opts = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('tiny_shapes_train',)", "DATASETS.TEST"]
    opts += ["()", "DATASETS.PROPOSAL_FILES_TRAIN", f"('{tiny_proposals['train']}',)"]
    opts += ["DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(tmp_path / "stage2")]
    opts += ["MODEL.DISTILL.TEACHER_CONFIG", str(tmp_path / "teacher")]
    opts += ["MODEL.DISTILL.LEARN_TEMPERATURE", True]
    config = os.path.join(SYNTHETIC, "S-Cls_KD_stage2.yaml")
    trainer = Trainer(setup_cfg(config, [*opts, "MODEL.WEIGHTS", str(tmp_path / "teacher")]))
    with pytest.raises(ValueError, match=r"MODEL.WEIGHTS \(stage 2 starts from stage 1's student"):
        trainer.resume_or_load(resume=False)
    trainer = Trainer(setup_cfg(config, [*opts, "MODEL.WEIGHTS", str(tmp_path / "stage1")]))
    trainer.resume_or_load(resume=False)
    stage1 = torch.load(tmp_path / "stage1" / RUN_WEIGHTS, weights_only=False)["model"]
    state = trainer.checkpointer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in stage1.items())


def test_train_net_evaluates_a_run_folder(datasets_dir, tmp_path):
    """``tools/train_net.py --eval-only --config-file <run folder>``: the run's config and
    weights, here on a dataset declared on the command line; the results go to <run>/eval,
    not to the OUTPUT_DIR its config.yaml names (a folder sent from elsewhere), and the run's
    config.yaml stays as it was (the pipeline compares it with its settings)."""
    root = os.path.join(datasets_dir, "synthetic_shapes")
    test = [["tiny_eval", os.path.join(root, "annotations", "instances_test.json"), root]]
    run = tmp_path / "student"
    fake_run(run, "S-Cls.yaml", "OUTPUT_DIR", str(tmp_path / "where_it_was_trained"))
    config = (run / RUN_CONFIG).read_bytes()
    out = subprocess.run(
        [
            *(sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--eval-only"),
            *("--config-file", str(run), "DATASETS.REGISTER", str(test)),
            *("DATASETS.TRAIN", "()", "DATASETS.TEST", "('tiny_eval',)"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DETECTRON2_DATASETS": str(tmp_path)},  # (no synthetic set made)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "copypaste: Task: multilabel" in out.stdout + out.stderr
    assert (run / "eval" / "inference" / "tiny_eval" / "multilabel_scores.npz").exists()
    assert (run / RUN_CONFIG).read_bytes() == config
    assert not (tmp_path / "where_it_was_trained").exists()


def test_photos_rewritten_in_place_are_told_from_those_a_run_or_store_was_made_of(tmp_path):
    """Same names, sizes, ids and labels, other bytes: a run trained on the photos before is
    refused (not silently reused), and so is a proposal store made for them."""
    import cv2
    import numpy as np
    from detectron2.data import DatasetCatalog

    from wsd_distill.data.datasets import register_declared_datasets
    from wsd_distill.data.proposals import (
        image_records,
        load_proposals_into_dataset,
        save_proposals,
    )
    from wsd_distill.engine.run_folders import check_run_settings

    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((32, 48, 3), 40, np.uint8))
    (tmp_path / "train.csv").write_text("a.jpg,cat\nb.jpg,dog\n")
    register_declared_datasets([["rewritten", str(tmp_path / "train.csv"), str(tmp_path)]])
    dicts = DatasetCatalog.get("rewritten")
    store = str(tmp_path / "proposals")
    boxes = [(np.array([[1, 2, 20, 20]], np.float32), np.ones(1, np.float32))] * 2
    save_proposals(store, [d["image_id"] for d in dicts], boxes, meta=image_records(dicts))
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "OwnData", "S-Cls.yaml"),
        ["DATASETS.TRAIN", ("rewritten",), "OUTPUT_DIR", str(tmp_path / "run")],
    )
    os.makedirs(cfg.OUTPUT_DIR)
    open(os.path.join(cfg.OUTPUT_DIR, RUN_CONFIG), "w").write(cfg.dump())
    check_run_settings(cfg)  # (records the training set)
    load_proposals_into_dataset(dicts, store)
    cv2.imwrite(str(tmp_path / "b.jpg"), np.full((32, 48, 3), 200, np.uint8))  # in place
    with pytest.raises(ValueError, match="the images, labels or photos of 'rewritten'"):
        check_run_settings(cfg)
    with pytest.raises(ValueError, match=r"'b.jpg' with photo bytes \(SHA-1\) [0-9a-f]{40}"):
        load_proposals_into_dataset(DatasetCatalog.get("rewritten"), store)
