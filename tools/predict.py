#!/usr/bin/env python
"""Run a trained student (S-Cls) or teacher (T-WDet) on images: files, globs or folders, in the
shape of detectron2's demo/demo.py.

    python tools/predict.py --config-file configs/Synthetic/S-Cls.yaml --input photos/ \\
        --output output/predictions MODEL.WEIGHTS output/demo/seed0/student/model_final.pth

For each image it writes ``<output>/<name>.jpg``: the student's top-k labels with their scores;
the teacher's top-10 proposals ranked by max_k S_rk and its top-k labels (the teacher proposes
its own boxes: ``MODEL.WSDDN.PROPOSALS_AT_TEST`` is "edge_boxes" unless set). The labels of a
photo without ground truth are drawn as predictions (white), not as right or wrong. All scores
go to ``<output>/scores.csv`` (one row per image, one column per class). Files that cannot be
read are listed at the end and in ``<output>/unreadable.txt``, and the exit code is then 1; the
other images are still done.
"""

import argparse
import csv
import glob
import io
import os
import sys

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from PIL import Image
from tqdm import tqdm

from wsd_distill.data import thing_classes_of
from wsd_distill.data.augmentation import build_augmentation
from wsd_distill.engine import setup_cfg
from wsd_distill.modeling.wsddn import region_objectness
from wsd_distill.utils import atomic_write_bytes
from wsd_distill.visualization import draw_teacher_view

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", required=True, help="image files, globs or folders")
    parser.add_argument("--output", required=True, help="folder for the pictures and scores.csv")
    parser.add_argument("--top-k", type=int, default=3, help="labels drawn per image")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model.pth"
    )
    return parser


def list_images(inputs):
    """Files named by ``inputs`` (files, globs, folders: their images, sorted), in order."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if n.lower().endswith(IMAGE_EXTENSIONS))
            files += [os.path.join(item, n) for n in names]
        elif glob.has_magic(item):
            files += sorted(glob.glob(item))
        else:
            files.append(item)  # (a missing one is reported as unreadable)
    return files


class Predictor:
    """A model of a config on one image read from disk, preprocessed as its test loader does
    (``INPUT.FORMAT``, the test resize); returns ``(image RGB [H, W, 3], image scores [K],
    proposals and objectness or None)``, boxes in the image's pixels."""

    def __init__(self, cfg):
        self.model = build_model(cfg).eval()
        DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.augmentation = T.AugmentationList(build_augmentation(cfg, is_train=False))
        self.format = cfg.INPUT.FORMAT
        self.is_teacher = cfg.MODEL.META_ARCHITECTURE == "WSDDN"

    @torch.no_grad()
    def __call__(self, file_name):
        image = utils.read_image(file_name, format=self.format)
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        self.augmentation(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        inputs = [{"image": tensor, "height": height, "width": width}]
        rgb = utils.convert_image_to_rgb(image, self.format)
        if not self.is_teacher:
            return rgb, self.model(inputs)[0]["image_scores"].cpu().numpy(), None
        out = self.model.teacher_outputs(inputs)
        boxes = out["proposals"][0].proposal_boxes.tensor.cpu().numpy().copy()
        boxes[:, 0::2] *= width / tensor.shape[2]  # network input -> original pixels
        boxes[:, 1::2] *= height / tensor.shape[1]
        objectness = region_objectness(out["region_scores"]).cpu().numpy()
        return rgb, out["image_scores"][0].cpu().numpy(), (boxes, objectness)


def picture_name(file_name, used):
    """The picture of ``file_name``: its base name, extension included, + ".jpg" (photo.png ->
    photo.png.jpg), numbered when another input had the same name (photo.png_2.jpg); ``used``
    (a set) collects the names given."""
    base = os.path.basename(file_name)
    name, k = f"{base}.jpg", 1
    while name in used:  # the same name in two folders
        k += 1
        name = f"{base}_{k}.jpg"
    used.add(name)
    return name


def main(args):
    cfg = setup_cfg(args.config_file, args.opts)
    if cfg.MODEL.META_ARCHITECTURE == "WSDDN" and cfg.MODEL.WSDDN.PROPOSALS_AT_TEST == (
        "precomputed"
    ):
        cfg.MODEL.WSDDN.PROPOSALS_AT_TEST = "edge_boxes"
    dataset = (cfg.DATASETS.TEST or cfg.DATASETS.TRAIN)[0]
    class_names = thing_classes_of(dataset)
    predictor = Predictor(cfg)
    os.makedirs(args.output, exist_ok=True)
    rows, unreadable, used = [], [], set()
    for file_name in tqdm(list_images(args.input), desc="predict", unit="img"):
        try:
            image, scores, proposals = predictor(file_name)
        except Exception as e:  # unreadable or corrupt: listed, the rest goes on
            unreadable.append(f"{file_name}: {e.__class__.__name__}: {e}")
            continue
        boxes, objectness = proposals or (np.zeros((0, 4)), np.zeros(0))
        drawing = draw_teacher_view(
            image, boxes, objectness, scores, class_names, num_labels=args.top_k
        )
        picture = picture_name(file_name, used)
        Image.fromarray(drawing).save(os.path.join(args.output, picture))
        rows.append([file_name, picture, *(f"{s:.5f}" for s in scores)])
    table = io.StringIO()
    csv.writer(table).writerows([["file_name", "picture", *class_names], *rows])
    atomic_write_bytes(os.path.join(args.output, "scores.csv"), table.getvalue().encode())
    print(f"{len(rows)} images: pictures and scores.csv in {args.output}")
    if unreadable:
        text = "\n".join(unreadable) + "\n"
        atomic_write_bytes(os.path.join(args.output, "unreadable.txt"), text.encode())
        files = "file" if len(unreadable) == 1 else "files"
        print(f"{len(unreadable)} {files} could not be read:\n{text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
