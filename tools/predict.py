#!/usr/bin/env python
"""Run a trained student (S-Cls) or teacher (T-WDet) on images: files, globs or folders, in the
shape of detectron2's demo/demo.py; or draw a teacher's view of a dataset's images.

    python tools/predict.py --config-file output/demo/seed0/student --input photos/ \\
        --output output/predictions
    python tools/predict.py --config-file output/demo/seed0/teacher --dataset \\
        synthetic_shapes_test --output output/teacher_pictures

--config-file is a run folder (its config.yaml and model_final.pth), a run's config.yaml or a
config file with MODEL.WEIGHTS; the class names are the config's (a run's names its own).

A folder is read with its subfolders. For each image it writes ``<output>/<name>.jpg`` (name:
the image's path in its folder; ``--no-pictures`` skips them): the student's top-k labels with
their scores; the teacher's top-10 proposals ranked by max_k S_rk and its top-k labels (the
teacher proposes its own boxes: ``MODEL.PROPOSAL_GENERATOR.NAME`` is "EdgeBoxesProposals"
unless set to another generator). The labels of a photo without ground truth are drawn as
predictions (white), not as right or wrong. All scores go to ``<output>/scores.csv`` (one row
per image, one column per class).
Files that cannot be read are listed at the end and in ``<output>/unreadable.txt``, and the
exit code is then 1; the other images are still done. A stopped run resumes: the same command
goes on from the last finished chunk of images (``<output>/scores.csv.partial/``); scores.csv
appears when all are done.

--dataset (instead of --input) draws a teacher's top-10 proposals (the dataset's precomputed
ones, as in its evaluation) and its top-3 labels on the first --num-images images of a dataset
of the config's DATASETS.TEST: labels in the ground truth green (+), others red (x).
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import csv
import glob
import hashlib
import io
import os
import shutil
import sys

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from tqdm import tqdm

from wsd_distill.checkpoint import load_trained_weights
from wsd_distill.data.augmentation import build_augmentation
from wsd_distill.data.image_files import read_image_file
from wsd_distill.engine import (
    Trainer,
    model_class_names,
    non_negative_int,
    parse_args_with_overrides,
    positive_int,
    run_tool,
    setup_run_cfg,
)
from wsd_distill.modeling import WSDDN
from wsd_distill.modeling.backbone.timm_backbone import fold_frozen_batch_norm
from wsd_distill.modeling.wsddn import rescale_boxes
from wsd_distill.utils import atomic_write_bytes, refuse_links
from wsd_distill.utils.digests import ids_digest
from wsd_distill.utils.partial_run import open_partial_run, read_chunk, write_chunk
from wsd_distill.visualization import (
    draw_teacher_view,
    picture_names,
    visualize_teacher,
    write_picture,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, metavar="RUN", help="a run folder or a config file"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, globs or folders")
    source.add_argument(
        "--dataset", help="a dataset of DATASETS.TEST: a teacher's view of its images, drawn"
    )
    parser.add_argument(
        "--num-images", type=positive_int, default=20, help="--dataset: images drawn"
    )
    parser.add_argument("--output", required=True, help="folder for the pictures and scores.csv")
    parser.add_argument("--top-k", type=positive_int, default=3, help="labels drawn per image")
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="images per forward pass"
    )
    parser.add_argument(
        "--workers", type=non_negative_int, default=2, help="processes reading images"
    )
    parser.add_argument(
        "--pictures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw each image's labels (and a teacher's boxes) into <output>/<name>.jpg",
    )
    parser.add_argument(
        "--chunk-size", type=positive_int, default=500, help="images per resumable chunk"
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model.pth"
    )
    return parser


def list_images(inputs):
    """[(file, name)] of the images named by ``inputs`` (files, globs, folders: their images and
    their subfolders', sorted), in order; a name is the file's path in its folder (a file's or a
    glob's: its base name)."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(
                os.path.relpath(os.path.join(root, n), item)
                for root, _, files in os.walk(item)
                for n in files
                if n.lower().endswith(IMAGE_EXTENSIONS)
            )
            found += [(os.path.join(item, n), n) for n in names]
        else:  # (a missing file is reported as unreadable)
            files = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            found += [(f, os.path.basename(f)) for f in files]
    return found


class ImageFiles(torch.utils.data.Dataset):
    """Image files read and preprocessed as the test loader does (``INPUT.FORMAT``, the test
    resize): item i is (file name, the model's input dict, the image RGB [H, W, 3], or None
    without ``pictures``), or (file name, None, why it cannot be read)."""

    def __init__(self, files, cfg, pictures=True):
        self.files, self.format, self.pictures = files, cfg.INPUT.FORMAT, pictures
        self.augmentation = T.AugmentationList(build_augmentation(cfg, is_train=False))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            image = read_image_file(self.files[i], self.format)
        except Exception as e:  # unreadable or corrupt: listed, the rest goes on
            return self.files[i], None, f"{e.__class__.__name__}: {e}"
        aug_input = T.AugInput(image)
        try:
            self.augmentation(aug_input)
        except Exception as e:  # e.g. a 20000 x 2 photo, whose short side resizes to 0 px
            size = f"{image.shape[1]} x {image.shape[0]} px"
            return self.files[i], None, f"{size}: cannot be resized for the model ({e})"
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        inputs = {"image": tensor, "height": image.shape[0], "width": image.shape[1]}
        rgb = utils.convert_image_to_rgb(image, self.format) if self.pictures else None
        return self.files[i], inputs, rgb  # (no full-size copy through the workers unless drawn)


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
        boxes = rescale_boxes(proposals, x["height"], x["width"], "proposal_boxes")
        boxes = boxes.proposal_boxes.tensor.cpu().numpy()
        results.append((image_scores.cpu().numpy(), (boxes, region_scores.cpu().numpy())))
    return results


def run_settings(cfg, files, args):
    """What a resumed run shares with the run it continues: the model (its config, its weights
    file's path, size and time), the images and the pictures."""
    weights = os.stat(cfg.MODEL.WEIGHTS) if os.path.isfile(cfg.MODEL.WEIGHTS) else None
    return {
        "config_sha1": hashlib.sha1(cfg.dump().encode()).hexdigest(),
        "weights": [cfg.MODEL.WEIGHTS, weights and weights.st_size, weights and weights.st_mtime],
        "images_sha1": ids_digest(files),
        "top_k": args.top_k,
        "pictures": args.pictures,
    }


def image_results(model, loader):
    """(scores [K], a teacher's (boxes, region scores) or None, the image RGB or None) or
    (None, why it cannot be read, None) of each image of ``loader``, in order."""
    for batch in loader:
        readable = [b for b in batch if b[1] is not None]
        outputs = iter(predict(model, [inputs for _, inputs, _ in readable]) if readable else [])
        for _, inputs, image_or_error in batch:
            if inputs is None:
                yield None, image_or_error, None
            else:
                yield (*next(outputs), image_or_error)


def write_scores(output, chunks, files, pictures, class_names):
    """scores.csv (and unreadable.txt, or none) from the finished chunks; the unreadable files."""
    rows, unreadable = [], []
    for path, s, _ in chunks:
        for i, (scores, error) in enumerate(read_chunk(path, ("scores", "errors"), ()), start=s):
            if error:
                unreadable.append(f"{files[i]}: {error}")
            else:
                rows.append([files[i], pictures[i], *(f"{x:.5f}" for x in scores)])
    table = io.StringIO()
    csv.writer(table).writerows([["file_name", "picture", *class_names], *rows])
    atomic_write_bytes(os.path.join(output, "scores.csv"), table.getvalue().encode())
    unreadable_file = os.path.join(output, "unreadable.txt")
    if unreadable:
        atomic_write_bytes(unreadable_file, ("\n".join(unreadable) + "\n").encode())
    elif os.path.exists(unreadable_file):  # an earlier run's
        os.remove(unreadable_file)
    return rows, unreadable


def check_output_outside_inputs(output, inputs):
    """Refuse an output folder that is an input folder or inside one: its pictures would be
    predicted on the next run."""
    out = os.path.realpath(output)
    for item in filter(os.path.isdir, inputs):
        folder = os.path.realpath(item)
        if os.path.commonpath([out, folder]) == folder:
            raise ValueError(
                f"--output {output} is inside the input folder {item}: its pictures would be "
                "predicted on the next run; choose an output folder outside it"
            )


def draw_dataset(args):
    """--dataset: a teacher's view of the dataset's first --num-images images."""
    cfg = setup_run_cfg(args.config_file, args.opts)
    if args.dataset not in cfg.DATASETS.TEST:
        raise ValueError(
            f"--dataset {args.dataset} is not in the config's DATASETS.TEST "
            f"{list(cfg.DATASETS.TEST)} (whose proposal files the teacher reads): add "
            f"DATASETS.TEST \"('{args.dataset}',)\" and its DATASETS.PROPOSAL_FILES_TEST"
        )
    model = Trainer.build_model(cfg)
    if not isinstance(model, WSDDN):
        raise ValueError(
            f"--dataset draws a teacher's view; {args.config_file} is a "
            f"{cfg.MODEL.META_ARCHITECTURE}: run it on the images with --input"
        )
    load_trained_weights(model, cfg.MODEL.WEIGHTS)
    loader = Trainer.build_test_loader(cfg, args.dataset)
    written = visualize_teacher(model, loader, args.dataset, args.output, args.num_images)
    print(f"Wrote {len(written)} pictures to {args.output}")
    return 0


def main(args):
    refuse_links(args.output)  # (its pictures' sub-folders, scores.csv.partial)
    if args.dataset:
        return draw_dataset(args)
    check_output_outside_inputs(args.output, args.input)
    cfg = setup_run_cfg(args.config_file, args.opts, datasets=False)
    if cfg.MODEL.PROPOSAL_GENERATOR.NAME == "PrecomputedProposals":  # photos come without any
        cfg.MODEL.PROPOSAL_GENERATOR.NAME = "EdgeBoxesProposals"  # (a student reads no proposals)
    found = list_images(args.input)
    if not found:
        raise SystemExit(
            f"predict: no image in {' '.join(args.input)} ({', '.join(IMAGE_EXTENSIONS)})"
        )
    files, pictures = [f for f, _ in found], picture_names([n for _, n in found])
    class_names = model_class_names(cfg)
    model = build_model(cfg).eval()
    load_trained_weights(model, cfg.MODEL.WEIGHTS)
    fold_frozen_batch_norm(model)
    scores_file = os.path.join(args.output, "scores.csv")
    settings = run_settings(cfg, files, args)
    chunks = open_partial_run(scores_file, settings, len(files), args.chunk_size)
    todo = [c for c in chunks if not os.path.exists(c[0])]
    done = len(files) - sum(e - s for _, s, e in todo)
    if done:
        print(f"predict: resuming, {done} of {len(files)} images done before", file=sys.stderr)
    images = torch.utils.data.Subset(
        ImageFiles(files, cfg, args.pictures), [i for _, s, e in todo for i in range(s, e)]
    )
    loader = torch.utils.data.DataLoader(
        images, batch_size=args.batch_size, num_workers=args.workers, collate_fn=lambda b: b
    )
    results = image_results(model, loader)
    no_proposals = (np.zeros((0, 4)), np.zeros((0, len(class_names))))
    with tqdm(total=len(files), initial=done, desc="predict", unit="img") as bar:
        for path, s, e in todo:  # a chunk's pictures, then its scores and errors
            scores, errors = np.zeros((e - s, len(class_names)), np.float32), []
            for i, (image_scores, proposals_or_error, image) in zip(range(s, e), results):
                error = proposals_or_error if image_scores is None else ""
                if not error:
                    scores[i - s] = image_scores
                if not error and args.pictures:
                    boxes, region_scores = proposals_or_error or no_proposals
                    drawing = draw_teacher_view(
                        image,
                        boxes,
                        region_scores,
                        image_scores,
                        class_names,
                        num_labels=args.top_k,
                    )
                    write_picture(os.path.join(args.output, pictures[i]), drawing)
                errors.append(error)
                bar.update()
            write_chunk(path, {"scores": scores, "errors": np.array(errors, str)}, {})
    rows, unreadable = write_scores(args.output, chunks, files, pictures, class_names)
    shutil.rmtree(f"{scores_file}.partial")
    print(f"{len(rows)} images: scores.csv{' and pictures' * args.pictures} in {args.output}")
    if unreadable:
        text = "\n".join(unreadable)
        print(
            f"{len(unreadable)} of {len(files)} images could not be read:\n{text}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, parse_args_with_overrides(get_parser(), "input")))
