"""COCO-format datasets as multi-label classification data (COCO-2014 and the synthetic set)."""

import json
import logging
from collections import defaultdict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)


def read_coco_labels(json_file, include_crowd=True):
    """The image-level labels of a COCO instances json, from its raw annotations (every
    annotation counts, whatever its segmentation: detectron2's loader drops some, e.g. a
    2-point polygon). Returns ``(categories, labels)``: the json's categories sorted by id, and
    ``{image_id: set of category ids}`` for every image (empty for an unannotated one); crowd
    annotations give labels unless ``include_crowd`` is False."""
    with PathManager.open(json_file) as f:
        data = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{json_file} is not a COCO instances json: it has no '{key}'")
    labels = {image["id"]: set() for image in data["images"]}
    if len(labels) < len(data["images"]):  # pycocotools would keep one image of each id
        files = defaultdict(list)
        for image in data["images"]:
            files[image["id"]].append(image.get("file_name"))
        image_id, names = next((i, n) for i, n in files.items() if len(n) > 1)
        raise ValueError(
            f"{json_file}: image id {image_id!r} is given to {len(names)} images "
            f"({', '.join(map(str, names[:3]))}), and {len(data['images']) - len(labels)} "
            f"ids in all are repeated: ids must be unique (COCO tools keep one image per id)"
        )
    category_ids = {c.get("id") for c in data["categories"]}
    for i, a in enumerate(data["annotations"]):
        missing = [k for k in ("id", "image_id", "category_id") if k not in a]
        if missing:
            raise ValueError(
                f"{json_file}: annotation {i} has no {missing} (each needs an id, an image_id "
                f"and a category_id; a bbox is optional)"
            )
        if a["category_id"] not in category_ids:
            raise ValueError(
                f"{json_file}: annotation {a['id']} (image {a['image_id']!r}) has category_id "
                f"{a['category_id']!r}, which is none of its {len(category_ids)} categories' ids"
            )
        if include_crowd or not a.get("iscrowd", 0):
            labels.get(a["image_id"], set()).add(a["category_id"])
    return sorted(data["categories"], key=lambda c: c["id"]), labels


def check_coco_classes(json_file, categories, dataset_name):
    """The json's class names must be the registered ``thing_classes``, in order."""
    registered = MetadataCatalog.get(dataset_name).get("thing_classes")
    names = [c["name"] for c in categories]
    if registered is not None and list(registered) != names:
        differ = [(a, b) for a, b in zip(registered, names) if a != b][:5]
        raise ValueError(
            f"Dataset '{dataset_name}' is registered with {len(registered)} thing_classes but "
            f"{json_file} has {len(names)} categories"
            + (f"; first differences (registered, json): {differ}" if differ else "")
        )


def load_coco_multilabel_json(
    json_file, image_root, dataset_name, include_crowd=True
) -> list[dict]:
    """Load a COCO instances json into detectron2 dicts with image-level labels.

    Records are detectron2's (``file_name``, ``image_id``, ``height``, ``width``,
    ``annotations`` with contiguous ``category_id``; crowd boxes kept with ``iscrowd=1``), plus
    ``multi_labels``: the sorted contiguous ids of the classes annotated in the image, read
    from the raw json (:func:`read_coco_labels`), crowd annotations included as in ML-GCN, ASL
    and Query2Label (``include_crowd=False``: only non-crowd ones). Images without labels are
    kept here; ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` drops them for training and evaluation
    alike (see ``get_multilabel_dataset_dicts``).

    Boxes are optional: an annotation without ``bbox`` (image-level labels, the natural format
    of weak supervision) gives its label and no entry in ``annotations``; the WSOD evaluation
    then uses only the images whose every label has a box (see ``WSODEvaluator``).
    """
    categories, labels = read_coco_labels(json_file, include_crowd)
    check_coco_classes(json_file, categories, dataset_name)
    dicts = load_coco_json(json_file, image_root, dataset_name)  # sets thing_classes
    to_contiguous = MetadataCatalog.get(dataset_name).thing_dataset_id_to_contiguous_id
    lost = defaultdict(int)  # labels that detectron2's annotations lack
    for record in dicts:
        record["multi_labels"] = sorted(to_contiguous[c] for c in labels[record["image_id"]])
        record["annotations"] = [a for a in record["annotations"] if "bbox" in a]
        with_boxes = {a["category_id"] for a in record["annotations"]}
        for c in set(record["multi_labels"]) - with_boxes:
            lost[c] += 1
    num_unlabeled = sum(not r["multi_labels"] for r in dicts)
    num_boxed = sum(bool(r["annotations"]) for r in dicts)
    logger.info(
        f"{dataset_name}: {len(dicts)} images, {num_unlabeled} without labels, {num_boxed} with "
        f"boxes" + (f"; {sum(lost.values())} labels have no box" if lost else "")
    )
    return dicts


def register_coco_multilabel(
    name, json_file, image_root, metadata=None, include_crowd=True
) -> None:
    """Register a COCO-format json as the multi-label dataset ``name``.

    ``metadata`` may carry ``thing_classes`` (and ``thing_dataset_id_to_contiguous_id``) so
    they are known before the json is read; the loader checks them against the json. Without
    them, the classes are read from the json when first needed. ``include_crowd``: see
    :func:`load_coco_multilabel_json`.
    """
    DatasetCatalog.register(
        name, lambda: load_coco_multilabel_json(json_file, image_root, name, include_crowd)
    )
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="multilabel",
        has_boxes=True,
        **(metadata or {}),
    )
