"""A checkpointed class count, so weights trained for another label set fail to load clearly."""

import torch
from detectron2.data import DatasetCatalog

from ..data.build import thing_classes_of


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


def check_class_order(class_names, dataset_name):
    """A registered dataset's classes must be the model's ``class_names`` (MODEL.CLASS_NAMES;
    empty: not checked), in the same order: a test set whose classes come in another order
    would be scored against the model's other outputs."""
    classes = list(thing_classes_of(dataset_name))
    if class_names and classes != list(class_names):
        differ = [(k, a, b) for k, (a, b) in enumerate(zip(class_names, classes)) if a != b]
        raise ValueError(
            f"Dataset '{dataset_name}' has its classes in another order (or others) than the "
            f"model's MODEL.CLASS_NAMES: first differences (index, model, dataset): "
            f"{differ[:5]}; give it the same class list (the training set's class file, or "
            f"its json's categories)"
        )


def check_dataset_class_count(cfg, num_classes, config_key):
    """``num_classes`` must be the class count (``thing_classes``) of every registered dataset
    of ``DATASETS.TRAIN`` (but ``DATASETS.UNLABELED``'s, whose labels are hidden) and
    ``DATASETS.TEST``, and their classes MODEL.CLASS_NAMES, in order (``check_class_order``)."""
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        if name in cfg.DATASETS.UNLABELED or name not in DatasetCatalog:
            continue  # named before it is registered: the data loader will say so
        classes = thing_classes_of(name)
        if len(classes) != num_classes:
            raise ValueError(
                f"Dataset '{name}' has {len(classes)} classes but {config_key} is {num_classes}"
            )
        check_class_order(cfg.MODEL.CLASS_NAMES, name)
