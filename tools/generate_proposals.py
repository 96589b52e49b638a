#!/usr/bin/env python
"""Object proposals for a registered dataset, into a proposal store (a folder of memory-mapped
arrays, read lazily per image) or, if --output ends with .pkl, a detectron2 pickle: computed
(--method), or converted from a file someone made (--from).

    python tools/generate_proposals.py --dataset coco_2014_train_multilabel \\
        --method edge_boxes --max-proposals 2000 --workers 16 --dtype float16 \\
        --output output/proposals/coco_2014_train_multilabel_edge_boxes

A dataset of your own is declared by a config's ``DATASETS.REGISTER`` (``--config-file`` and
trailing ``KEY VALUE`` overrides, e.g. ``DATASETS.REGISTER "[['mine_train', 'train.json',
'images']]"``). ``--method detectron2 --d2-config C --d2-weights W`` takes the boxes of any
detectron2 RPN or detector instead (the paper's Table 5). A stopped run (Ctrl-C, kill) resumes
when started again with the same arguments; the output only appears when complete. Point
``DATASETS.PROPOSAL_FILES_TRAIN/TEST`` at it.

--from converts: a detectron2 pickle (its ids kept; with --dataset, checked against the
dataset's images, boxes inside them, and recording their names and sizes, as a computed store
does; a proposal store into a pickle likewise), or a WSDDN/OICR ``.mat`` file (cells
``images``, ``boxes``, optionally ``boxScores``; MATLAB v5 or v7.3), matched to --dataset by
image name, its box order (x1,y1,x2,y2 or y1,x1,y2,x2) detected from the image sizes unless
--box-order says, its boxes 1-based MATLAB pixel indices unless --zero-based::

    python tools/generate_proposals.py --dataset voc_2007_test_multilabel \\
        --from SelectiveSearchVOC2007test.mat --output output/proposals/voc07_test_ss
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import os
import sys

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

from wsd_distill.box_proposers import proposal_methods
from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data.proposals import (
    image_records,
    load_mat_proposals,
    load_proposals_into_dataset,
    read_proposals,
    save_proposals,
)
from wsd_distill.engine import (
    add_dataset_config_arguments,
    non_negative_int,
    positive_int,
    run_tool,
    setup_cfg,
)


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        help="a registered dataset name, e.g. synthetic_shapes_train (optional with a "
        "--from pickle)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--method", choices=proposal_methods(), help="compute them")
    source.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="convert them: a detectron2 pickle, a proposal store (into a .pkl), or a .mat file",
    )
    parser.add_argument(
        "--max-proposals",
        type=positive_int,
        default=500,
        help="boxes kept per image (authors: 500)",
    )
    parser.add_argument("--workers", type=non_negative_int, default=1, help="worker processes")
    parser.add_argument(
        "--output", required=True, help="proposal store to write (a .pkl path: detectron2 pickle)"
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default="float32",
        help="the store's box dtype (float16: half the disk and page cache, 1 px steps above 2048)",
    )
    parser.add_argument(
        "--min-size", type=float, default=4.0, help="drop boxes thinner than this (pixels)"
    )
    parser.add_argument(
        "--max-side",
        type=positive_int,
        default=None,
        help="downscale images whose longer side exceeds this before proposing "
        "(default: 1333 for edge_boxes, 500 for selective_search)",
    )
    parser.add_argument(
        "--sed-model",
        default=None,
        help="edge_boxes: structured-edge model (model.yml.gz from opencv_extra); "
        "default: OpenCV Sobel magnitude thinned by Canny",
    )
    parser.add_argument(
        "--ss-mode", choices=["fast", "quality"], default="fast", help="selective_search mode"
    )
    parser.add_argument(
        "--d2-config",
        help="detectron2: the config of an RPN or detector, e.g. from detectron2's model zoo",
    )
    parser.add_argument("--d2-weights", help="detectron2: its trained weights (a path or URL)")
    parser.add_argument("--d2-device", default="cpu", help="detectron2: cpu or cuda")
    parser.add_argument(
        "--d2-opts", nargs="*", default=[], help="detectron2: config overrides, KEY VALUE ..."
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=16,
        help="images per resumable chunk (and progress step)",
    )
    parser.add_argument(
        "--box-order", choices=["auto", "xyxy", "yxyx"], default="auto", help="--from a .mat"
    )
    parser.add_argument(
        "--zero-based", action="store_true", help="--from a .mat whose boxes are 0-based already"
    )
    add_dataset_config_arguments(parser)
    return parser


def generator_kwargs(args):
    kwargs = {"max_proposals": args.max_proposals, "min_size": args.min_size}
    if args.max_side is not None:
        kwargs["max_side"] = args.max_side
    if args.method == "edge_boxes" and args.sed_model:
        if not os.path.isfile(args.sed_model):
            raise FileNotFoundError(f"--sed-model {args.sed_model} does not exist")
        kwargs["sed_model"] = os.path.abspath(args.sed_model)
    if args.method == "selective_search":
        kwargs["mode"] = args.ss_mode
    if args.method == "detectron2":
        if args.max_side is not None:
            raise ValueError(
                "--max-side does not apply to --method detectron2: its config sizes the input "
                "(--d2-opts INPUT.MIN_SIZE_TEST ...)"
            )
        for flag in ("d2_config", "d2_weights"):
            if not getattr(args, flag):
                raise ValueError(f"--method detectron2 needs --{flag.replace('_', '-')}")
        if not os.path.isfile(args.d2_config):
            raise FileNotFoundError(f"--d2-config {args.d2_config} does not exist")
        kwargs.update(
            config_file=os.path.abspath(args.d2_config),
            weights=args.d2_weights,
            device=args.d2_device,
            opts=list(args.d2_opts),
        )
    return kwargs


def convert(args):
    """--from: the proposals of a pickle, a store or a .mat file, into --output."""
    if args.source.endswith(".mat"):
        dicts = DatasetCatalog.get(args.dataset)
        ids, boxes, logits = load_mat_proposals(
            args.source, dicts, args.box_order, not args.zero_based
        )
        by_id = {d["image_id"]: d for d in dicts}
        images = image_records([by_id[i] for i in ids])  # the store records what it was made for
    else:
        ids, boxes, logits = read_proposals(args.source)
        images = {}
        if args.dataset:  # checked (boxes inside their images) and recorded
            by_id = {d["image_id"]: d for d in DatasetCatalog.get(args.dataset)}
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise ValueError(
                    f"{args.source}: {len(unknown)} image ids are not in {args.dataset} "
                    f"(first: {unknown[0]!r})"
                )
            dicts = [by_id[i] for i in ids]
            load_proposals_into_dataset(dicts, args.source, check_images=True)
            images = image_records(dicts)
        else:
            print(
                "No --dataset: the store records no image names or sizes, so it cannot be "
                "checked against the images it is used with",
                file=sys.stderr,
            )
    meta = {"converted_from": args.source, **images}
    save_proposals(args.output, ids, zip(boxes, logits), args.dtype, meta=meta)
    print(
        f"Wrote {args.output}: {len(ids)} images, "
        f"{sum(len(b) for b in boxes) / max(len(ids), 1):.0f} boxes/image"
    )


def main(args):
    logger = setup_logger(name="wsd_distill")
    setup_cfg(args.config_file, args.opts)  # DATASETS.REGISTER
    if args.source and os.path.lexists(args.output):
        raise FileExistsError(
            f"--output {args.output} exists: a conversion writes a new file or store, it never "
            "replaces one (give another --output, or delete it)"
        )
    if args.source:
        return convert(args)
    if os.path.exists(args.output):
        logger.info(f"{args.output} already exists; delete it to generate again")
        return None
    if args.method == "edge_boxes" and not args.sed_model:
        logger.warning(
            "EdgeBoxes without --sed-model runs on OpenCV's Sobel+Canny edges: these are not the "
            "paper's proposals (EdgeBoxes on structured-edge maps). For the paper's setting, pass "
            "--sed-model model.yml.gz (opencv_extra's ximgproc sample model; see README)."
        )
    dicts = DatasetCatalog.get(args.dataset)
    stats = generate_proposal_file(
        dicts,
        args.output,
        args.method,
        generator_kwargs(args),
        args.workers,
        args.chunk_size,
        args.dtype,
    )
    print(
        f"{args.dataset}: {stats['images']} images in {stats['seconds']:.1f} s with "
        f"{args.workers} worker(s): "
        f"{stats['images_per_s']:.2f} images/s, {stats['images_per_s_per_worker']:.2f} images/s "
        "per worker, "
        f"{stats['boxes_per_image']:.0f} boxes/image"
    )
    return stats


if __name__ == "__main__":
    parser = get_parser()
    args = parser.parse_args()
    if not args.dataset and not (args.source and not args.source.endswith(".mat")):
        parser.error("--dataset is needed (it may be left out only --from a pickle or store)")
    if args.source:
        run_tool(main, args, resume="")
    else:
        run_tool(main, args)
