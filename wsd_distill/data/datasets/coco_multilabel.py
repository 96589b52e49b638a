"""COCO-format datasets as multi-label classification data (COCO-2014 and the synthetic set)."""

import logging

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

logger = logging.getLogger(__name__)


def load_coco_multilabel_json(json_file, image_root, dataset_name):
    """Load a COCO instances json into detectron2 dicts with image-level labels.

    Records are detectron2's (``file_name``, ``image_id``, ``height``, ``width``,
    ``annotations`` with contiguous ``category_id``; crowd boxes kept with ``iscrowd=1``),
    plus ``multi_labels``: the sorted contiguous ids of the classes with a non-crowd box.
    Images without labels are kept here; training drops them when
    ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` is on (see ``get_multilabel_dataset_dicts``).
    """
    dicts = load_coco_json(json_file, image_root, dataset_name)
    for record in dicts:
        record["multi_labels"] = sorted(
            {a["category_id"] for a in record["annotations"] if not a.get("iscrowd", 0)}
        )
    num_unlabeled = sum(not r["multi_labels"] for r in dicts)
    logger.info(f"{dataset_name}: {len(dicts)} images, {num_unlabeled} without labels")
    return dicts


def register_coco_multilabel(name, json_file, image_root, metadata=None):
    """Register a COCO-format json as the multi-label dataset ``name``.

    ``metadata`` may carry ``thing_classes`` (and ``thing_dataset_id_to_contiguous_id``) so
    they are known before the json is read; the loader checks them against the json.
    """
    DatasetCatalog.register(name, lambda: load_coco_multilabel_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="multilabel",
        has_boxes=True,
        **(metadata or {}),
    )
