"""Register the builtin datasets under $DETECTRON2_DATASETS (default ./datasets).

See datasets/README.md for the expected folders. Registration only records paths: nothing
is read until ``DatasetCatalog.get(name)``.
"""

import os

from detectron2.data.datasets.builtin_meta import _get_builtin_metadata

from .coco_multilabel import register_coco_multilabel
from .nuswide import register_nuswide
from .synthetic import register_synthetic_shapes
from .voc import register_voc_multilabel

_COCO_2014 = {
    "coco_2014_train_multilabel": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val_multilabel": ("coco/val2014", "coco/annotations/instances_val2014.json"),
}


def datasets_root():
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_all(root):
    coco_meta = _get_builtin_metadata("coco")
    coco_meta = {k: coco_meta[k] for k in ("thing_classes", "thing_dataset_id_to_contiguous_id")}
    for name, (image_root, json_file) in _COCO_2014.items():
        register_coco_multilabel(
            name, os.path.join(root, json_file), os.path.join(root, image_root), coco_meta
        )
    for split in ("train", "test"):
        register_nuswide(f"nuswide_81_{split}", os.path.join(root, "nuswide"), split)
    for split in ("trainval", "test"):
        register_voc_multilabel(
            f"voc_2007_{split}_multilabel", os.path.join(root, "VOC2007"), split, "2007"
        )
    register_synthetic_shapes(os.path.join(root, "synthetic_shapes"))


register_all(datasets_root())
