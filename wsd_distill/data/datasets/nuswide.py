"""NUS-WIDE (81 concepts) as a multi-label dataset, from the official release or a plain list.

Official layout under ``root``::

    ConceptsList/Concepts81.txt (or Concepts81.txt)   one concept name per line
    ImageList/TrainImagelist.txt, TestImagelist.txt   image paths relative to Flickr/
                                                      (``\\``-separated)
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt   one 0/1 per image, list order
    Flickr/<folder>/<image>.jpg

Plain list (the common pre-processed copies): ``root/<split>.csv`` with lines
``path,concept;concept;...`` (an optional header ``path,labels``), or ``root/<split>.json``
holding ``[{"path": ..., "labels": [concept, ...]}, ...]``; paths relative to ``root``.
Images whose file is missing are left out, counted and reported in the log (and in the
metadata as ``missing_images``): NUS-WIDE copies usually lack some of the Flickr files.
"""

import csv
import json
import logging
import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

# fmt: off
NUSWIDE_CONCEPTS = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars",
    "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog",
    "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost", "garden",
    "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map", "military", "moon",
    "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest",
    "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky",
    "snow", "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers",
    "tattoo", "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle",
    "water", "waterfall", "wedding", "whales", "window", "zebra",
)
# fmt: on
_OFFICIAL_SPLITS = {"train": "Train", "test": "Test"}


def _read_lines(path):
    with PathManager.open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _load_official(root, split, concepts):
    candidates = [os.path.join(root, "ConceptsList", "Concepts81.txt")]
    candidates.append(os.path.join(root, "Concepts81.txt"))  # as some copies have it
    concept_file = next((p for p in candidates if os.path.exists(p)), None)
    if concept_file is None:
        raise FileNotFoundError(f"NUS-WIDE under {root}: none of {candidates} exists")
    listed = _read_lines(concept_file)
    if tuple(listed) != tuple(concepts):
        raise ValueError(
            f"{concept_file} lists {len(listed)} concepts that differ from the registered "
            f"{len(concepts)} (first listed: {listed[:3]})"
        )
    tag = _OFFICIAL_SPLITS[split]
    paths = _read_lines(os.path.join(root, "ImageList", f"{tag}Imagelist.txt"))
    labels = np.zeros((len(paths), len(concepts)), dtype=bool)
    for k, concept in enumerate(concepts):
        label_file = os.path.join(
            root, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{tag}.txt"
        )
        column = np.array([int(v) for v in _read_lines(label_file)])
        if len(column) != len(paths):
            raise ValueError(
                f"{label_file} has {len(column)} lines, expected {len(paths)} (one per image)"
            )
        labels[:, k] = column > 0
    files = [os.path.join(root, "Flickr", *p.replace("\\", "/").split("/")) for p in paths]
    return files, [np.flatnonzero(row).tolist() for row in labels]


def _load_list(root, split, concepts):
    index = {c: i for i, c in enumerate(concepts)}
    csv_file, json_file = os.path.join(root, f"{split}.csv"), os.path.join(root, f"{split}.json")
    if os.path.exists(csv_file):
        with PathManager.open(csv_file) as f:
            rows = [r for r in csv.reader(f) if r and r[0] != "path"]
        entries = [(r[0], [c for c in (r[1] if len(r) > 1 else "").split(";") if c]) for r in rows]
        source = csv_file
    elif os.path.exists(json_file):
        with PathManager.open(json_file) as f:
            entries = [(e["path"], e["labels"]) for e in json.load(f)]
        source = json_file
    else:
        raise FileNotFoundError(
            f"NUS-WIDE not found under {root}: expected the official layout "
            f"(ImageList/{_OFFICIAL_SPLITS[split]}Imagelist.txt) or a list file {split}.csv / "
            f"{split}.json"
        )
    files, multi_labels = [], []
    for line, (path, names) in enumerate(entries, start=1):
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"{source}, entry {line} ({path}): unknown concepts {unknown}")
        files.append(os.path.join(root, path))
        multi_labels.append(sorted({index[n] for n in names}))
    return files, multi_labels


def load_nuswide(root, split, dataset_name=None, concepts=NUSWIDE_CONCEPTS) -> list[dict]:
    """Load NUS-WIDE ``split`` ("train" or "test") as detectron2 dicts.

    Returns records with ``file_name``, ``image_id`` (the file name without extension, the
    Flickr photo id in the official release) and ``multi_labels`` (sorted concept indices).
    Height and width are not stored (the mapper reads them from the image).
    """
    if os.path.exists(os.path.join(root, "ImageList")):
        files, multi_labels = _load_official(root, split, concepts)
    else:
        files, multi_labels = _load_list(root, split, concepts)
    dicts, missing = [], []
    for file_name, labels in zip(files, multi_labels):
        if not os.path.exists(file_name):
            missing.append(file_name)
            continue
        image_id = os.path.splitext(os.path.basename(file_name))[0]
        dicts.append({"file_name": file_name, "image_id": image_id, "multi_labels": labels})
    if missing:
        logger.warning(
            f"NUS-WIDE {split}: {len(missing)} of {len(files)} listed images are missing and left "
            f"out (first: {missing[:3]})"
        )
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(missing_images=len(missing))
    ids = [d["image_id"] for d in dicts]
    if len(set(ids)) != len(ids):
        raise ValueError(f"NUS-WIDE {split} under {root}: image file names are not unique")
    logger.info(f"NUS-WIDE {split}: {len(dicts)} images, {len(concepts)} concepts")
    return dicts


def register_nuswide(name, root, split, concepts=NUSWIDE_CONCEPTS) -> None:
    DatasetCatalog.register(name, lambda: load_nuswide(root, split, name, concepts))
    MetadataCatalog.get(name).set(
        thing_classes=list(concepts),
        dataset_root=root,
        split=split,
        evaluator_type="multilabel",
        has_boxes=False,
    )
