"""A checkpointed class count, so weights trained for another label set fail to load clearly."""

import torch
from detectron2.data import MetadataCatalog


def add_class_count_check(module, num_classes, config_key):
    """Register a ``class_count`` buffer on ``module`` (saved in its checkpoints) and a load hook
    that rejects a state dict whose count differs, naming ``config_key``."""
    module.register_buffer("class_count", torch.tensor(num_classes))

    def check(state_dict, prefix, *args):
        saved = state_dict.get(prefix + "class_count")
        if saved is not None and int(saved) != num_classes:
            raise ValueError(
                f"The checkpoint was trained for {int(saved)} classes but {config_key} is "
                f"{num_classes}: "
                f"use weights trained on this dataset, or set the class count to match"
            )

    module._register_load_state_dict_pre_hook(check)


def check_dataset_class_count(cfg, num_classes, config_key):
    """``num_classes`` must be the class count (``thing_classes``) of every dataset of
    ``DATASETS.TRAIN`` and ``DATASETS.TEST`` whose metadata has one."""
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f"Dataset '{name}' has {len(classes)} classes but {config_key} is {num_classes}"
            )
