"""The config set-up every wsd-distill tool shares."""

import torch
from detectron2.config import get_cfg

from ..config import add_wsd_distill_config


def setup_cfg(config_file, opts=()):
    """detectron2's config with wsd-distill's keys, ``config_file`` and the ``opts`` overrides
    merged in (not frozen); on a machine without CUDA, a config naming a CUDA device runs on
    the CPU."""
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg
