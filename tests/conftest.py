"""Shared fixtures: a tiny synthetic shapes dataset, generated once per test session."""

import os
import subprocess

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


# Installed as ``sitecustomize`` in every process of a command run by ``run_killed_after``: once
# the target module is imported, its function (or method) is wrapped so that, when it has
# returned the given number of times in a process, the whole process group is killed.
_KILL_AFTER = """
import importlib.abc, importlib.util, os, signal, sys

MODULE, ATTRIBUTE = os.environ["WSD_TEST_KILL_AFTER"].split(":")
CALLS = int(os.environ["WSD_TEST_KILL_CALLS"])


def _wrap(module):
    *path, name = ATTRIBUTE.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    original, returned = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        returned[0] += 1
        if returned[0] == CALLS:
            os.killpg(0, signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        spec.loader.exec_module = lambda module: (run(module), _wrap(module))
        return spec


sys.meta_path.insert(0, _Finder())
"""


def run_killed_after(cmd, env, target, calls, folder):
    """Run the command ``cmd`` (a tool) in a process group of its own and SIGKILL the whole
    group, as ``kill -9`` would, right after ``target`` ("module:function" or
    "module:Class.method") has returned ``calls`` times in one of its processes: a stop at a
    chosen point, not at a moment found by polling. ``folder`` holds the hook. Returns the
    completed process."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write(_KILL_AFTER)
    path = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    env = dict(env, PYTHONPATH=path, WSD_TEST_KILL_AFTER=target, WSD_TEST_KILL_CALLS=str(calls))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, start_new_session=True)
