"""The config set-up every wsd-distill tool shares."""

import argparse

import torch
from detectron2.config import get_cfg

from ..config import add_wsd_distill_config, check_config
from ..data.datasets import register_declared_datasets


def setup_cfg(config_file, opts=()):
    """detectron2's config with wsd-distill's keys, ``config_file`` (if not "") and the ``opts``
    overrides merged in (not frozen) and checked (``check_config``), the datasets of
    ``DATASETS.REGISTER`` registered; on a machine without CUDA, a config naming a CUDA device
    runs on the CPU."""
    cfg = add_wsd_distill_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    check_config(cfg)
    register_declared_datasets(cfg.DATASETS.REGISTER)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def add_dataset_config_arguments(parser):
    """``--config-file`` and trailing ``KEY VALUE`` overrides for a tool that reads datasets by
    name, so that it sees those a config declares (``DATASETS.REGISTER``); see ``setup_cfg``."""
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="a config whose DATASETS.REGISTER declares the datasets (optional)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides, e.g. DATASETS.REGISTER \"[['mine', 'train.json', 'images']]\"",
    )
