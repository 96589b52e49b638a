"""Shared fixtures: a tiny synthetic shapes dataset, generated once per test session."""

import os

import pytest

import wsd_distill  # noqa: F401  (registers the builtin datasets)
from wsd_distill.data.datasets import generate_synthetic_shapes, register_synthetic_shapes

TINY_SIZES = {"train": 24, "val": 8, "test": 40}
TINY_IMAGE_SIZE = 192
TINY_PREFIX = "tiny_shapes"  # registered as tiny_shapes_{train,val,test}


@pytest.fixture(scope="session")
def datasets_dir(tmp_path_factory):
    """A $DETECTRON2_DATASETS folder with synthetic_shapes/ (also registered as tiny_shapes_*)."""
    root = tmp_path_factory.mktemp("datasets")
    generate_synthetic_shapes(
        os.path.join(root, "synthetic_shapes"), TINY_SIZES, TINY_IMAGE_SIZE, seed=0
    )
    register_synthetic_shapes(os.path.join(root, "synthetic_shapes"), prefix=TINY_PREFIX)
    return str(root)


@pytest.fixture(scope="session")
def tiny_proposals(datasets_dir, tmp_path_factory):
    """EdgeBoxes proposal stores (100 boxes per image) of tiny_shapes_{train,val,test}: {split:
    path}."""
    from detectron2.data import DatasetCatalog

    from wsd_distill.box_proposers.generate import generate_proposal_file

    folder = tmp_path_factory.mktemp("proposals")
    files = {}
    for split in TINY_SIZES:
        files[split] = str(folder / f"{TINY_PREFIX}_{split}")  # proposal stores
        generate_proposal_file(
            DatasetCatalog.get(f"{TINY_PREFIX}_{split}"),
            files[split],
            "edge_boxes",
            {"max_proposals": 100},
        )
    return files
