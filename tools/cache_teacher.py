#!/usr/bin/env python
"""Run the frozen teacher once over the training set, for every augmentation the student's
loader can draw (each INPUT.MIN_SIZE_TRAIN, unflipped and flipped), and store what KD needs:
p'_T (Eq. 10) and the RoI boxes and features (float16) that L_f uses. Then train the student
with MODEL.DISTILL.TEACHER_CACHE pointing at it: no teacher in the loop.

    python tools/cache_teacher.py --config-file configs/Synthetic/S-Cls_KD.yaml \\
        --output output/synthetic/teacher_cache
    python tools/train_net.py --config-file configs/Synthetic/S-Cls_KD.yaml \\
        MODEL.DISTILL.TEACHER_CACHE output/synthetic/teacher_cache MODEL.LOAD_PROPOSALS False

The config is the student's KD config (it names the teacher, its proposals, the temperatures,
ROI_TOPK and the training sizes). A stopped run resumes when started again with
the same arguments; the cache appears at --output only when complete. The images are read
and augmented in DATALOADER.NUM_WORKERS processes while the teacher runs. ``--dry-run`` prints
its size (entries, bytes per entry, total, an upper bound) against the free disk space and
exits; a run refuses to start when the disk cannot hold it while it is written (about twice
its size).
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import logging
import os
import shutil

from detectron2.utils.logger import setup_logger

from wsd_distill.data import get_multilabel_dataset_dicts
from wsd_distill.engine import positive_int, run_tool, setup_cfg
from wsd_distill.engine.teacher_cache_writer import cache_size, write_teacher_cache


def main(args):
    setup_logger(name="wsd_distill")
    cfg = setup_cfg(args.config_file, args.opts)
    if args.dry_run:
        dicts = get_multilabel_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
        size = cache_size(cfg, len(dicts))
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(args.output))).free
        print(
            f"{args.output}: {size['entries']} entries ({len(dicts)} images x "
            f"{size['entries'] // max(len(dicts), 1)} augmentations) of up to {size['rois']} "
            f"RoIs, {size['bytes_per_entry'] / 2**20:.2f} MiB each: up to "
            f"{size['bytes'] / 2**30:.2f} GiB ({2 * size['bytes'] / 2**30:.2f} GiB while it is "
            f"written); {free / 2**30:.1f} GiB free"
        )
        return
    if os.path.exists(args.output):
        logging.getLogger("wsd_distill").info(
            f"{args.output} already exists; delete it to cache again"
        )
        return
    write_teacher_cache(cfg, args.output, args.batch_size, args.chunk_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="the student's KD config")
    parser.add_argument("--output", required=True, help="teacher cache (a store folder) to write")
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="images per teacher forward pass"
    )
    parser.add_argument(
        "--chunk-size", type=positive_int, default=256, help="images per resumable chunk"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the cache's size and the free space, exit"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    run_tool(main, parser.parse_args())
