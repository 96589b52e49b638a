#!/usr/bin/env python
"""Export a trained student for serving without detectron2: TorchScript (traced) and ONNX
(torch.onnx's dynamo exporter; any batch and image size), with ``student.json`` saying what it
takes and gives. Both are checked against the PyTorch model on one batch before writing.

    python tools/export_student.py --config-file output/demo/seed0/student --output output/export

    # serving: images are uint8 [B, 3, H, W], 0-255, in the config's INPUT.FORMAT channel
    # order (BGR for every config here: cv2.imread's order; flip an RGB array, x[:, ::-1]);
    # with torch alone:
    scores = torch.jit.load("output/export/student.ts")(images)
    # or with onnxruntime alone:
    scores = onnxruntime.InferenceSession("output/export/student.onnx").run(
        None, {"images": images})[0]

student.json says the same ("input"), with the class names in score order, and the resize that
predict.py applies to a decoded photo before the model ("resize_first"): do the same to get its
scores (the module takes any size, but a raw photo gives slightly other scores).
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import io
import json
import os

import numpy as np
import torch
from detectron2.modeling import build_model

from wsd_distill.checkpoint import load_trained_weights
from wsd_distill.data.augmentation import build_augmentation
from wsd_distill.engine import (
    model_class_names,
    run_tool,
    setup_run_cfg,
)
from wsd_distill.modeling import StudentClassifier
from wsd_distill.modeling.student_export import ExportableStudent
from wsd_distill.utils import atomic_write_bytes, refuse_links


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        required=True,
        metavar="RUN",
        help="a student's run folder (config.yaml, model_final.pth) or a config file",
    )
    parser.add_argument("--output", required=True, help="folder for student.ts/.onnx/.json")
    parser.add_argument(
        "--formats", nargs="+", choices=["torchscript", "onnx"], default=["torchscript", "onnx"]
    )
    parser.add_argument(
        "--example-size",
        type=int,
        default=0,
        help="side of the example batch (default: 2 x " "MODEL.STUDENT.INPUT_SIZE)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model.pth"
    )
    return parser


def main(args):
    cfg = setup_run_cfg(args.config_file, [*args.opts, "MODEL.DEVICE", "cpu"], datasets=False)
    student = build_model(cfg)
    if not isinstance(student, StudentClassifier):
        raise ValueError(f"{args.config_file} is a {cfg.MODEL.META_ARCHITECTURE}, not a student")
    load_trained_weights(student, cfg.MODEL.WEIGHTS)
    model = ExportableStudent(student).eval()
    side = args.example_size or 2 * (cfg.MODEL.STUDENT.INPUT_SIZE or 112)
    images = torch.randint(0, 256, (2, 3, side, side), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(images).numpy()
    os.makedirs(args.output, exist_ok=True)
    refuse_links(args.output)  # (student.onnx.tmp is written by torch.onnx.export)
    if "torchscript" in args.formats:
        with torch.no_grad():
            traced = torch.jit.trace(model, (images,))
        check("TorchScript", traced(images).detach().numpy(), reference)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        atomic_write_bytes(os.path.join(args.output, "student.ts"), buffer.getvalue())
    if "onnx" in args.formats:
        import onnxruntime

        path = os.path.join(args.output, "student.onnx")
        dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=16)}
        dims[3] = torch.export.Dim("width", min=16)
        torch.onnx.export(
            model,
            (images,),
            path + ".tmp",
            input_names=["images"],
            output_names=["scores"],
            dynamic_shapes={"images": dims},
            dynamo=True,
            external_data=False,  # the weights inside the one file
        )
        session = onnxruntime.InferenceSession(path + ".tmp")
        check("ONNX", session.run(None, {"images": images.numpy()})[0], reference)
        os.replace(path + ".tmp", path)
    info = {
        "input": f"uint8 [B, 3, H, W] (NCHW), values 0-255, channels {cfg.INPUT.FORMAT}",
        "output": "scores [B, K] in (0, 1)",
        "resize_first": "the scores of predict.py (and of the test evaluation) come from each "
        "decoded image resized by "
        + ", ".join(map(str, build_augmentation(cfg, is_train=False)))
        + " (the module then brings it to the student's own size)",
        "classes": model_class_names(cfg),
        "weights": cfg.MODEL.WEIGHTS,
    }
    atomic_write_bytes(
        os.path.join(args.output, "student.json"), json.dumps(info, indent=1).encode()
    )
    print(f"Exported {', '.join(args.formats)} to {args.output}")


def check(name, scores, reference):
    error = float(np.abs(scores - reference).max())
    if error > 1e-4:
        raise RuntimeError(f"The {name} export differs from the model by {error:.2g}")
    print(f"{name}: largest difference from the PyTorch model {error:.1e}")


if __name__ == "__main__":
    run_tool(main, get_parser().parse_args(), resume="")
