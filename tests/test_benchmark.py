"""What dev/benchmark_*.py time: the real trainer and test loader on generated data."""

import os
import sys

import torch
from detectron2.data import DatasetCatalog

from wsd_distill.engine import setup_cfg
from wsd_distill.pipeline.schedule import median_step_times

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "dev"))  # the benchmarks' helpers, beside them
from benchmark_common import jpeg_dataset, loader_inputs  # noqa: E402  isort: skip


def test_generated_jpegs_and_proposals_pass_the_loaders_checks(tmp_path):
    """The random proposal store fits its images (recorded names and sizes, boxes inside), so
    the real test loader attaches 20 proposals to each image, resized with it."""
    dataset, store = jpeg_dataset(str(tmp_path), 3, height=48, width=64, proposals=20)
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "Synthetic", "T-WDet.yaml"),
        [
            *("DATASETS.TRAIN", (), "DATASETS.TEST", (dataset,), "MODEL.ROI_HEADS.NUM_CLASSES", 80),
            *("DATASETS.PROPOSAL_FILES_TEST", (store,), "DATALOADER.NUM_WORKERS", 0),
        ],
    )
    inputs = loader_inputs(cfg, dataset, 3)
    assert [x["image_id"] for x in inputs] == [0, 1, 2]
    for x in inputs:
        assert x["image"].shape == (3, 128, 171)  # INPUT.MIN_SIZE_TEST 128
        boxes = x["proposals"].proposal_boxes.tensor
        assert boxes.shape == (20, 4)
        assert (boxes[:, 2:] <= torch.tensor([171, 128])).all() and (boxes >= 0).all()


def test_each_folder_is_its_own_dataset(tmp_path):
    first, _ = jpeg_dataset(str(tmp_path / "a"), 2, height=32, width=32)
    second, _ = jpeg_dataset(str(tmp_path / "b"), 2, height=32, width=32)
    assert first != second
    assert DatasetCatalog.get(second)[0]["file_name"].startswith(str(tmp_path / "b"))


def test_step_timer_trains_and_writes_no_checkpoint(tmp_path):
    """median_step_times runs the Trainer's steps (detectron2's time and data_time metrics)
    with no checkpoint and no evaluation."""
    dataset, _ = jpeg_dataset(str(tmp_path / "jpegs"), 4, height=64, width=64, num_classes=12)
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"),
        [
            *("DATASETS.TRAIN", (dataset,), "DATASETS.TEST", (dataset,), "SOLVER.MAX_ITER", 5),
            *("SOLVER.IMS_PER_BATCH", 2, "DATALOADER.NUM_WORKERS", 0),
            *("OUTPUT_DIR", str(tmp_path / "run"), "SOLVER.CHECKPOINT_PERIOD", 2),
        ],
    )
    times = median_step_times(cfg, warmup=3)
    assert times["time"] > 0 and times["data_time"] >= 0 and times["teacher_time"] == 0
    written = os.listdir(tmp_path / "run") if os.path.isdir(tmp_path / "run") else []
    assert not [f for f in written if f.endswith(".pth") or f == "last_checkpoint"]
