#!/usr/bin/env python
"""Read every image of registered datasets once, as training will (fully decoded, EXIF
orientation applied), and list every image that cannot be used: missing, truncated or
corrupt files, files whose size is not the one the annotations give, image ids given twice and
boxes that are not finite or have a negative width or height; print each dataset's
classes with their image counts. Run it once before training on a new dataset; the exit code
is 1 when any image is bad.

    python tools/check_dataset.py --dataset coco_2014_train_multilabel coco_2014_val_multilabel
    python tools/check_dataset.py --config-file C.yaml   # the config's DATASETS.TRAIN and TEST

Datasets of your own are declared by the config's ``DATASETS.REGISTER`` (or trailing ``KEY
VALUE`` overrides).
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import argparse
import multiprocessing as mp
import os
import sys

import numpy as np
from detectron2.data import DatasetCatalog
from tabulate import tabulate
from tqdm import tqdm

from wsd_distill.data import thing_classes_of
from wsd_distill.data.build import dataset_problems
from wsd_distill.data.image_files import read_image
from wsd_distill.engine import (
    add_dataset_config_arguments,
    parse_args_with_overrides,
    positive_int,
    run_tool,
    setup_cfg,
)


def check(dataset_dict):
    """None, or why the image cannot be used."""
    try:
        read_image(dataset_dict)
    except OSError as e:
        return str(e)
    return None


def print_class_counts(name, dicts):
    """The dataset's classes with the number of images of each."""
    classes = thing_classes_of(name)
    counts = np.zeros(len(classes), int)
    for d in dicts:
        counts[d["multi_labels"]] += 1
    unlabeled = sum(not d["multi_labels"] for d in dicts)
    rows = [[c, n] for c, n in zip(classes, counts)] + [["(no label)", unlabeled]]
    print(tabulate(rows, headers=["class", "images"]) + "\n")


def main(args):
    cfg = setup_cfg(args.config_file, args.opts)
    names = args.dataset or [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
    if not names:
        raise SystemExit("check_dataset: name --dataset, or a --config-file with datasets")
    bad = []
    with mp.get_context("spawn").Pool(args.workers) as pool:  # one start for every dataset
        for name in names:
            try:
                dicts = DatasetCatalog.get(name)
            except (OSError, ValueError, KeyError) as e:  # the list or json itself is wrong
                print(f"{name}: cannot be loaded")
                bad.append(f"Dataset '{name}': {e}")
                continue
            errors = dataset_problems(name, dicts)  # missing files among them: not read again
            present = [d for d in dicts if os.path.isfile(d["file_name"])]
            results = pool.imap(check, present, chunksize=16)
            errors += [e for e in tqdm(results, total=len(present), desc=name, unit="img") if e]
            print(f"{name}: {len(dicts)} images, {len(errors)} bad")
            print_class_counts(name, dicts)
            bad += errors
    print("\n".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", nargs="+", help="dataset names (default: the config's TRAIN and TEST)"
    )
    parser.add_argument("--workers", type=positive_int, default=mp.cpu_count())
    add_dataset_config_arguments(parser)
    sys.exit(run_tool(main, parse_args_with_overrides(parser, "dataset"), resume=""))
