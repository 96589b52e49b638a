"""tools/export_student.py: the TorchScript and ONNX students give the PyTorch student's scores,
on other batch and image sizes than the export's, without detectron2 at run time."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.engine import setup_cfg

from conftest import ROOT, random_run, synthetic_cfg

SERVE = """
import sys, numpy as np, torch
images = torch.from_numpy(np.load(sys.argv[2]))
if sys.argv[1].endswith(".ts"):
    scores = torch.jit.load(sys.argv[1])(images).detach().numpy()
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(sys.argv[1])
    scores = session.run(None, {"images": images.numpy()})[0]
assert not any(m.startswith(("detectron2", "wsd_distill")) for m in sys.modules), "imported"
np.save(sys.argv[3], scores)
"""


def test_exported_student_gives_the_pytorch_scores(tmp_path):
    pytest.importorskip("onnxruntime")
    config = os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml")
    weights = random_run(tmp_path, synthetic_cfg("S-Cls.yaml"), "model")[1]
    output = tmp_path / "export"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "export_student.py"),
            "--config-file",
            config,
            "--output",
            str(output),
            "MODEL.WEIGHTS",
            weights,
        ],
        check=True,
        capture_output=True,
    )
    assert sorted(os.listdir(output)) == ["student.json", "student.onnx", "student.ts"]
    info = json.loads((output / "student.json").read_text())
    assert info["classes"][0] == "circle" and info["input"].endswith("values 0-255, channels BGR")
    resize = "ResizeShortestEdge(short_edge_length=(128,), max_size=256"
    assert resize in info["resize_first"]
    # 3 images of 96 x 112 (the export saw 2 of 128 x 128), as the test loader gives them
    rng = np.random.default_rng(0)
    images = np.stack([render_image(rng, 112)[0][:96].transpose(2, 0, 1) for _ in range(3)])
    student = build_model(setup_cfg(config, ["MODEL.DEVICE", "cpu"])).eval()
    DetectionCheckpointer(student).load(weights)
    with torch.no_grad():
        expected = [student([{"image": torch.from_numpy(x)}])[0]["image_scores"] for x in images]
    np.save(tmp_path / "images.npy", images)
    for name in ("student.ts", "student.onnx"):
        scores_file = tmp_path / f"{name}.npy"
        subprocess.run(
            [sys.executable, "-c", SERVE, str(output / name), str(tmp_path / "images.npy")]
            + [str(scores_file)],
            check=True,
            capture_output=True,
            cwd=str(tmp_path),  # (not the project: nothing of it on the path)
        )
        np.testing.assert_allclose(np.load(scores_file), torch.stack(expected), atol=1e-5)
