"""Training actually learns: short CPU runs of the real configs on generated synthetic shapes.

The full distillation run takes minutes and is marked ``slow`` (``make test-slow``, which CI
runs too); the fast tests check that the teacher's loss falls on a small set and that the
student learns.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from wsd_distill.data.datasets import generate_synthetic_shapes, register_synthetic_shapes
from wsd_distill.engine import Trainer

from conftest import IN_PROCESS, ROOT, synthetic_cfg, train


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory):
    """800 training and 200 validation images of 128 px (the benchmark's size): small_shapes_*."""
    root = str(tmp_path_factory.mktemp("small") / "shapes")
    generate_synthetic_shapes(root, {"train": 800, "val": 200}, image_size=128, seed=1)
    register_synthetic_shapes(root, prefix="small_shapes")
    return root


def chance_map(dataset_name):
    """The mAP of random scores: each class's AP is its positive rate, in percent."""
    labels = np.zeros((0, 12))
    for d in DatasetCatalog.get(dataset_name):
        labels = np.vstack([labels, np.isin(np.arange(12), d["multi_labels"])])
    return 100 * labels.mean(axis=0).mean()


def test_teacher_loss_falls(datasets_dir, tiny_proposals, tmp_path):
    """On 24 images the teacher's loss falls by over 40% within 80 iterations (it fits them)."""
    cfg = synthetic_cfg(
        "T-WDet.yaml",
        *(*IN_PROCESS, "OUTPUT_DIR", str(tmp_path), "DATASETS.TEST", ()),
        *("DATASETS.TRAIN", ("tiny_shapes_train",)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (tiny_proposals["train"],)),
        *("MODEL.WSDDN.MAX_PROPOSALS", 32, "SOLVER.IMS_PER_BATCH", 8, "SOLVER.MAX_ITER", 80),
        *("SOLVER.WARMUP_ITERS", 5),
    )
    losses, _ = train(cfg)
    first, last = np.mean([v for v, _ in losses[:5]]), np.mean([v for v, _ in losses[-5:]])
    assert last < 0.6 * first, (first, last)


def test_student_learns_synthetic_shapes(small_shapes, tmp_path):
    """S-Cls without KD, 400 iterations at 64x64: val mAP clearly above chance."""
    cfg = synthetic_cfg(
        "S-Cls.yaml",
        *(*IN_PROCESS, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", 400),
        *("DATASETS.TRAIN", ("small_shapes_train",), "DATASETS.TEST", ("small_shapes_val",)),
    )
    losses, results = train(cfg)
    chance = chance_map("small_shapes_val")
    assert np.mean([v for v, _ in losses[-20:]]) < np.mean([v for v, _ in losses[:20]])
    assert results["multilabel"]["mAP"] > chance + 10, (results["multilabel"]["mAP"], chance)


def teacher_agreement(run, teacher, dataset):
    """Mean over the test images of the Pearson correlation between ``run``'s scores of the
    classes and ``teacher``'s (saved by their evaluations)."""
    scores = []
    for folder in (run, teacher):
        path = os.path.join(folder, "inference", dataset, "multilabel_scores.npz")
        with np.load(path) as saved:
            scores.append(saved["scores"])
    a, b = (s - s.mean(axis=1, keepdims=True) for s in scores)
    return np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)))


@pytest.mark.slow  # about 15 minutes on 2 cores
def test_distillation_helps_on_the_synthetic_benchmark(tmp_path):
    """The demo at its real size for seed 0 (about 15 minutes on 2 cores): the teacher localizes
    better than the same teacher untrained; each KD student's scores agree with its teacher's
    more than the plain student's do (what KD does, whatever the seed), and the joint KD
    student is above the plain one (on every seed measured, the worst by 3.1 mAP:
    docs/results.md)."""
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"))
    output, proposals = tmp_path / "demo", tmp_path / "proposals"
    demo = [sys.executable, os.path.join(ROOT, "tools", "distill.py"), "--synthetic"]
    demo += ["--output", str(output)]
    subprocess.run([*demo, "--proposals-dir", str(proposals), "--seeds", "0"], env=env, check=True)
    summary = json.loads((output / "results.json").read_text())["per_seed"]["0"]
    # the same teacher untrained (seed 0's initial weights), on the same test images
    register_synthetic_shapes(str(tmp_path / "datasets" / "synthetic_shapes"), prefix="slow_shapes")
    cfg = synthetic_cfg(
        "T-WDet.yaml",
        *(*IN_PROCESS, "OUTPUT_DIR", str(tmp_path / "untrained")),
        *("DATASETS.TEST", ("slow_shapes_test",)),
        *("DATASETS.PROPOSAL_FILES_TEST", (str(proposals / "synthetic_shapes_test_edge_boxes"),)),
    )
    torch.manual_seed(0)
    corloc = Trainer.test(cfg, Trainer.build_model(cfg))["wsod"]["CorLoc"]
    assert summary["T-WDet"]["CorLoc"] > corloc + 5, (summary["T-WDet"], corloc)
    seed = output / "seed0"
    plain = teacher_agreement(seed / "student", seed / "teacher", "synthetic_shapes_test")
    for kd in ("student_kd_stage2", "student_kd_joint"):
        agreement = teacher_agreement(seed / kd, seed / "teacher", "synthetic_shapes_test")
        assert agreement > plain, (kd, agreement, plain)
    assert summary["KD gain (joint)"]["mAP"] > 0, summary
