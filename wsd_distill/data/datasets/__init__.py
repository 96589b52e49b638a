from . import builtin  # noqa: F401  (registers the builtin datasets)
from .coco_multilabel import load_coco_multilabel_json, register_coco_multilabel
from .declared import register_declared_datasets
from .label_list import load_label_list, register_label_list
from .nuswide import NUSWIDE_CONCEPTS, load_nuswide, register_nuswide
from .synthetic import (
    SHAPE_CLASSES,
    generate_synthetic_shapes,
    prepare_synthetic_shapes,
    register_synthetic_shapes,
)
from .voc import load_voc_multilabel, register_voc_multilabel
