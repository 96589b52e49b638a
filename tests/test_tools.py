"""Command-line entry points."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_net_lists_detectron2_flags():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--config-file",
        "--eval-only",
        "--resume",
        "--num-gpus",
        "--num-machines",
        "--machine-rank",
        "--dist-url",
        "opts",
    ):
        assert flag in out


def test_demo_runs_end_to_end(datasets_dir, tmp_path):
    """The whole demo on the tiny set, a few iterations per model (the real run is `make demo`)."""
    sizes = [
        "DATASETS.SYNTHETIC.NUM_TRAIN",
        "24",
        "DATASETS.SYNTHETIC.NUM_VAL",
        "8",
        "DATASETS.SYNTHETIC.NUM_TEST",
        "40",
        "DATASETS.SYNTHETIC.IMAGE_SIZE",
        "192",
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "MODEL.WSDDN.MAX_PROPOSALS",
        "30",
        "DATALOADER.NUM_WORKERS",
        "0",
    ]
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "demo.py"),
            "--output",
            str(tmp_path),
            "--proposals-dir",
            str(tmp_path / "proposals"),
            "--workers",
            "2",
            *sizes,
        ],
        env=dict(os.environ, DETECTRON2_DATASETS=datasets_dir),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "objects <10% area" in out and "GT recall@0.5" in out and "images/s" in out
    assert os.path.exists(
        tmp_path / "proposals" / "synthetic_shapes_test_edge_boxes" / "index.json"
    )
    for model in ("teacher", "student", "student_kd_stage1", "student_kd_stage2"):
        assert os.path.exists(tmp_path / "seed0" / model / "model_final.pth"), model
    assert len(os.listdir(tmp_path / "seed0" / "teacher" / "pictures")) == 20
    table = (tmp_path / "results.md").read_text()
    assert table in out
    for row in ("| S-Cls w/o KD", "| T-WDet", "| S-Cls w/ KD", "CorLoc"):
        assert row in table
    assert (tmp_path / "kd_gain_per_class.png").read_bytes()[:4] == b"\x89PNG"
