#!/usr/bin/env python
"""Run a trained student (S-Cls) or teacher (T-WDet) on images: files, globs or folders, in the
shape of detectron2's demo/demo.py.

    python tools/predict.py --config-file output/demo/seed0/student --input photos/ \\
        --output output/predictions

--config-file is a run folder (its config.yaml and model_final.pth), a run's config.yaml or a
config file with MODEL.WEIGHTS; the class names are the config's (a run's names its own).

For each image it writes ``<output>/<name>.jpg``: the student's top-k labels with their scores;
the teacher's top-10 proposals ranked by max_k S_rk and its top-k labels (the teacher proposes
its own boxes: ``MODEL.WSDDN.PROPOSALS_AT_TEST`` is "edge_boxes" unless set). The labels of a
photo without ground truth are drawn as predictions (white), not as right or wrong. All scores
go to ``<output>/scores.csv`` (one row per image, one column per class). Files that cannot be
read are listed at the end and in ``<output>/unreadable.txt``, and the exit code is then 1; the
other images are still done.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: it quiets detectron2's import warnings)
import argparse
import csv
import glob
import io
import os
import sys

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from PIL import Image
from tqdm import tqdm

from wsd_distill.data.augmentation import build_augmentation
from wsd_distill.data.mapper import read_image_file
from wsd_distill.engine import (
    load_trained_weights,
    model_class_names,
    non_negative_int,
    positive_int,
    setup_run_cfg,
)
from wsd_distill.modeling import WSDDN
from wsd_distill.utils import atomic_write_bytes
from wsd_distill.visualization import draw_teacher_view

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, metavar="RUN", help="a run folder or a config file"
    )
    parser.add_argument("--input", nargs="+", required=True, help="image files, globs or folders")
    parser.add_argument("--output", required=True, help="folder for the pictures and scores.csv")
    parser.add_argument("--top-k", type=positive_int, default=3, help="labels drawn per image")
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="images per forward pass"
    )
    parser.add_argument(
        "--workers", type=non_negative_int, default=2, help="processes reading images"
    )
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


class ImageFiles(torch.utils.data.Dataset):
    """Image files read and preprocessed as the test loader does (``INPUT.FORMAT``, the test
    resize): item i is (file name, the model's input dict, the image RGB [H, W, 3]), or (file
    name, None, why it cannot be read)."""

    def __init__(self, files, cfg):
        self.files, self.format = files, cfg.INPUT.FORMAT
        self.augmentation = T.AugmentationList(build_augmentation(cfg, is_train=False))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            image = read_image_file(self.files[i], self.format)
        except Exception as e:  # unreadable or corrupt: listed, the rest goes on
            return self.files[i], None, f"{e.__class__.__name__}: {e}"
        aug_input = T.AugInput(image)
        self.augmentation(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        inputs = {"image": tensor, "height": image.shape[0], "width": image.shape[1]}
        return self.files[i], inputs, utils.convert_image_to_rgb(image, self.format)


@torch.no_grad()
def predict(model, inputs):
    """A student's or a teacher's outputs on a batch of input dicts: per image (image scores
    [K], None) or, for a teacher, (image scores [K], (its proposals [R, 4] in the image's
    pixels, their region scores [R, K])). A teacher pads the images of a batch to one size,
    which can change its scores in the last digits (--batch-size 1 does not pad)."""
    if not isinstance(model, WSDDN):
        return [(out["image_scores"].cpu().numpy(), None) for out in model(inputs)]
    out = model.teacher_outputs(inputs)
    results = []
    for x, proposals, region_scores, image_scores in zip(
        inputs,
        out["proposals"],
        out["region_scores"].split(out["num_regions"]),
        out["image_scores"],
    ):
        boxes = proposals.proposal_boxes.tensor.cpu().numpy().copy()
        boxes[:, 0::2] *= x["width"] / x["image"].shape[2]  # network input -> original pixels
        boxes[:, 1::2] *= x["height"] / x["image"].shape[1]
        results.append((image_scores.cpu().numpy(), (boxes, region_scores.cpu().numpy())))
    return results


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
    cfg = setup_run_cfg(args.config_file, args.opts, datasets=False)
    if cfg.MODEL.WSDDN.PROPOSALS_AT_TEST == "precomputed":  # photos come without proposals
        cfg.MODEL.WSDDN.PROPOSALS_AT_TEST = "edge_boxes"  # (a student reads no MODEL.WSDDN key)
    files = ImageFiles(list_images(args.input), cfg)
    if not len(files):
        raise SystemExit(
            f"predict: no image in {' '.join(args.input)} ({', '.join(IMAGE_EXTENSIONS)})"
        )
    class_names = model_class_names(cfg)
    model = build_model(cfg).eval()
    load_trained_weights(model, cfg.MODEL.WEIGHTS)
    os.makedirs(args.output, exist_ok=True)
    loader = torch.utils.data.DataLoader(
        files,
        batch_size=args.batch_size,
        num_workers=args.workers,
        collate_fn=lambda batch: batch,
    )
    rows, unreadable, used = [], [], set()
    no_proposals = (np.zeros((0, 4)), np.zeros((0, len(class_names))))
    with tqdm(total=len(files), desc="predict", unit="img") as bar:
        for batch in loader:
            for file_name, _, error in (b for b in batch if b[1] is None):
                unreadable.append(f"{file_name}: {error}")
            batch = [b for b in batch if b[1] is not None]
            outputs = predict(model, [inputs for _, inputs, _ in batch]) if batch else []
            for (file_name, _, image), (scores, proposals) in zip(batch, outputs):
                boxes, region_scores = proposals or no_proposals
                drawing = draw_teacher_view(
                    image, boxes, region_scores, scores, class_names, num_labels=args.top_k
                )
                picture = picture_name(file_name, used)
                Image.fromarray(drawing).save(os.path.join(args.output, picture))
                rows.append([file_name, picture, *(f"{s:.5f}" for s in scores)])
            bar.update(len(batch))
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
