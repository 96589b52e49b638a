"""What the tests share: a tiny synthetic shapes dataset and its proposals, generated once per
test session; the one config builder (``synthetic_cfg``, and the tiny models built on it); a run
folder with random weights (``random_run``, and the teachers made with it); a training loop; a
tool stopped by SIGKILL at a chosen point (``run_killed_after``); a tool's refusal or check in
this process (``tool_in_process``). Test modules import the helpers from here (``from conftest
import ...``) and take the fixtures by name."""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import contextlib
import io
import json
import logging
import os
import runpy
import subprocess
import sys

import pytest
import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.logger import setup_logger

from wsd_distill import add_wsd_distill_config
from wsd_distill.data.datasets import generate_synthetic_shapes, register_synthetic_shapes
from wsd_distill.engine import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def _loggers():
    """Every logger of this process by name ("" the root)."""
    return {
        "": logging.getLogger(),
        **{n: logging.getLogger(n) for n in logging.Logger.manager.loggerDict},
    }


def tool_in_process(tool, *argv):
    """``python tools/<tool> argv`` run in this process, for a refusal or a check that ends
    before any training (seconds of imports saved): (exit status, stderr); its stdout goes to
    the test's (``capsys``)."""
    path, argv0, stderr = os.path.join(ROOT, "tools", tool), sys.argv, io.StringIO()
    sys.argv = [path, *map(str, argv)]
    kept = {name: (x.handlers[:], x.propagate, x.level) for name, x in _loggers().items()}
    try:
        with contextlib.redirect_stderr(stderr):
            runpy.run_path(path, run_name="__main__")
        status = 0
    except SystemExit as e:  # as the interpreter ends: sys.exit("message") prints it, status 1
        status = 1 if isinstance(e.code, str) else e.code or 0
        stderr.write(f"{e.code}\n" if isinstance(e.code, str) else "")
    finally:
        sys.argv = argv0
        for name, logger in _loggers().items():  # as before setup_logger, which is cached
            handlers, propagate, level = kept.get(name, ([], True, logging.NOTSET))
            logger.handlers[:], logger.propagate, logger.level = handlers, propagate, level
        setup_logger.cache_clear()
    return status, stderr.getvalue()


def synthetic_cfg(config, *opts):
    """A config of configs/Synthetic (``config``: a file name there, or any config path) with
    wsd-distill's keys, on the CPU, then the overrides ``opts`` (KEY, VALUE, ...); not checked
    (``setup_cfg`` checks), so that a test can hand a model or the Trainer what a user might."""
    cfg = add_wsd_distill_config(get_cfg())
    path = config if os.path.isabs(config) else os.path.join(ROOT, "configs", "Synthetic", config)
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return cfg


def random_run(folder, cfg, name="model_final"):
    """A run folder as training leaves one, with the seed-0 random initial weights of ``cfg``'s
    model: ``config.yaml`` and ``<name>.pth`` in ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save(name)
    config_file = os.path.join(folder, "config.yaml")
    with open(config_file, "w") as f:
        f.write(cfg.dump())
    return config_file, os.path.join(folder, f"{name}.pth")


# A training run in this process: no loader workers, seed 0, no checkpoint but the last.
IN_PROCESS = ["DATALOADER.NUM_WORKERS", 0, "SEED", 0, "SOLVER.CHECKPOINT_PERIOD", 10**5]


def train(cfg):
    """Train ``cfg`` from scratch in this process: (its total_loss history, the last
    evaluation's results or None)."""
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = trainer.storage.history("total_loss").values()
    return losses, getattr(trainer, "_last_eval_results", None)


# A tiny WSDDN: a 3-stage VGG (8, 16, 16 channels; its conv3 map at stride 4), fc6/fc7 32 wide.
TINY_TEACHER = [
    *("DATASETS.TRAIN", (), "DATASETS.TEST", ()),  # not the config's 12-class datasets
    *("MODEL.VGG.STAGE_CHANNELS", [[8], [16], [16]], "MODEL.VGG.OUT_FEATURES", ["conv3"]),
    *("MODEL.ROI_HEADS.IN_FEATURES", ["conv3"], "MODEL.ROI_BOX_HEAD.FC_DIM", 32),
]


def tiny_cfg(num_classes=5, refine_iters=0):
    """The tiny WSDDN's config (``TINY_TEACHER``), ``num_classes`` classes, OICR branches."""
    return synthetic_cfg(
        "T-WDet.yaml",
        *TINY_TEACHER,
        *("MODEL.ROI_HEADS.NUM_CLASSES", num_classes, "MODEL.WSDDN.REFINE_ITERS", refine_iters),
    )


def tiny_student_cfg(teacher_config, teacher_weights, num_classes=5, head="fc", **distill):
    """A tiny student of the tiny teacher: its conv3 map (16 channels, stride 4) at 48 px; the
    "fc" head pools 12 x 12 to 3 x 3, fc6/fc7 32 wide (the teacher's width); "pool": 16 wide.
    ``distill``: MODEL.DISTILL keys."""
    cfg = tiny_cfg(num_classes)
    cfg.merge_from_list(
        [
            *("MODEL.META_ARCHITECTURE", "StudentClassifier"),
            *("MODEL.STUDENT.NUM_CLASSES", num_classes, "MODEL.STUDENT.IN_FEATURE", "conv3"),
            *("MODEL.STUDENT.INPUT_SIZE", 48, "MODEL.STUDENT.HEAD", head),
            *("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 3, "MODEL.ROI_BOX_HEAD.FC_DIM", 32),
            *("MODEL.DISTILL.ENABLED", True, "MODEL.DISTILL.TEACHER_FEATURE_DIM", 32),
            *("MODEL.DISTILL.TEACHER_CONFIG", teacher_config),
            *("MODEL.DISTILL.TEACHER_WEIGHTS", teacher_weights),
        ]
    )
    for k, v in distill.items():
        cfg.MODEL.DISTILL[k] = v
    return cfg


def make_input(num_proposals, size=(64, 80), labels=(1, 3), seed=0):
    """A mapper dict of the tiny models: a random image of ``size``, ``num_proposals`` random
    boxes in it, 5 classes with ``labels`` on; its original size twice ``size``."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    proposals = Instances(size)
    xy = torch.rand(num_proposals, 2, generator=g) * torch.tensor([w / 2, h / 2])
    wh = 8 + torch.rand(num_proposals, 2, generator=g) * torch.tensor([w / 2, h / 2])
    proposals.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
    proposals.objectness_logits = torch.rand(num_proposals, generator=g)
    y = torch.zeros(5)
    y[list(labels)] = 1
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    return {
        "image": image,
        "proposals": proposals,
        "multi_labels": y,
        "height": 2 * h,
        "width": 2 * w,
        "image_id": seed,
    }


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """The tiny WSDDN's config and random weights on disk, as a trained teacher would leave
    them: (config.yaml, model_final.pth)."""
    return random_run(tmp_path_factory.mktemp("tiny_teacher"), tiny_cfg())


# The synthetic teacher and students of the training tests, made small and fast.
SMALL = [
    *("MODEL.DEVICE", "cpu", "SEED", 3, "INPUT.MIN_SIZE_TRAIN", (96,), "INPUT.MIN_SIZE_TEST", 96),
    *("MODEL.WSDDN.MAX_PROPOSALS", 32, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 2),
]


@pytest.fixture(scope="session")
def random_teacher(tmp_path_factory):
    """The overrides naming a synthetic teacher (configs/Synthetic/T-WDet.yaml, ``SMALL``) with
    random weights, in a run folder."""
    folder = tmp_path_factory.mktemp("random_teacher")
    config_file, weights = random_run(folder, synthetic_cfg("T-WDet.yaml", *SMALL))
    return ["MODEL.DISTILL.TEACHER_CONFIG", config_file, "MODEL.DISTILL.TEACHER_WEIGHTS", weights]


def train_net_command(datasets_dir, proposals, output_dir, *opts, config="T-WDet.yaml"):
    """tools/train_net.py on the tiny set (``SMALL``, 12 iterations, a checkpoint every 5, 2
    loader workers) with the overrides ``opts``: (command, environment)."""
    data = [
        *("DATASETS.TEST", (), "DATASETS.PROPOSAL_FILES_TRAIN", (proposals,)),
        *("DATALOADER.NUM_WORKERS", 2, "SOLVER.MAX_ITER", 12, "SOLVER.CHECKPOINT_PERIOD", 5),
        *("OUTPUT_DIR", output_dir, *opts),
    ]
    cmd = [
        sys.executable,
        os.path.join(ROOT, "tools", "train_net.py"),
        "--config-file",
        os.path.join(ROOT, "configs", "Synthetic", config),
        *map(str, [*SMALL, *data]),
    ]
    return cmd, dict(os.environ, DETECTRON2_DATASETS=datasets_dir)


def assert_same_final_weights(dir_a, dir_b):
    """``model_final.pth`` of two runs hold the same weights (to float rounding)."""
    a = torch.load(os.path.join(dir_a, "model_final.pth"))["model"]
    b = torch.load(os.path.join(dir_b, "model_final.pth"))["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")


def random_rpn(folder):
    """Model zoo's RPN config made small (ResNet-18 FPN, 128 px) with seeded random weights saved
    as ``folder/rpn.pth``: (config file, config overrides, weights)."""
    config = model_zoo.get_config_file("COCO-Detection/rpn_R_50_FPN_1x.yaml")
    opts = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    opts += ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "MODEL.DEVICE", "cpu"]
    cfg = get_cfg()
    cfg.merge_from_file(config)
    cfg.merge_from_list(opts)
    return config, opts, random_run(folder, cfg, "rpn")[1]


def write_coco(path):
    """Category ids with gaps (1, 3, 7); image 10: two boxes and a crowd box; 20: only a crowd
    box; 30: only a 2-point polygon, which detectron2's loader drops; 40: no annotation. Empty
    image files beside it (the image root): the loaders check that every image is there."""

    def annotation(i, image_id, category_id, iscrowd=0, **extra):
        box = {"bbox": [1, 2, 30, 40], "area": 1200, "iscrowd": iscrowd}
        return {"id": i, "image_id": image_id, "category_id": category_id, **box, **extra}

    coco = {
        "images": [
            {"id": i, "file_name": f"{i:012d}.jpg", "height": 100, "width": 120}
            for i in (10, 20, 30, 40)
        ],
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
            {"id": 7, "name": "train"},
        ],
        "annotations": [
            annotation(1, 10, 7),
            annotation(2, 10, 1),
            annotation(3, 10, 3, iscrowd=1),
            annotation(4, 20, 3, iscrowd=1),
            annotation(5, 30, 1, segmentation=[[1, 1, 5, 5]]),
        ],
    }
    with open(path, "w") as f:
        json.dump(coco, f)
    for image in coco["images"]:
        open(os.path.join(os.path.dirname(path), image["file_name"]), "wb").close()
