"""Dataset dicts and data loaders for multi-label training and evaluation."""

import collections
import itertools
import logging
import math
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.build import check_metadata_consistency
from detectron2.structures import BoxMode

from .proposals import load_proposals_into_dataset

logger = logging.getLogger(__name__)


def dataset_problems(name, dicts):
    """What makes the dicts of dataset ``name`` unusable, one line each: a missing image file,
    an image id given to more than one image (proposals, caches and evaluation are keyed by
    it), a ground-truth box that is not finite or has a negative width or height."""
    problems = [
        f"Dataset '{name}', image {d['image_id']!r}: no image file {d['file_name']}"
        for d in dicts
        if not os.path.isfile(d["file_name"])
    ]
    files = collections.defaultdict(list)
    for d in dicts:
        files[d["image_id"]].append(d["file_name"])
    for image_id, names in files.items():
        if len(names) > 1:
            problems.append(
                f"Dataset '{name}': image id {image_id!r} is given to {len(names)} images "
                f"({', '.join(names[:3])}): ids must be unique"
            )
    for d in dicts:
        for a in d.get("annotations", ()):
            if "bbox" not in a:
                continue
            mode = a.get("bbox_mode", BoxMode.XYWH_ABS)
            x0, y0, x1, y1 = BoxMode.convert(list(a["bbox"]), mode, BoxMode.XYXY_ABS)
            if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 < x0 or y1 < y0:
                problems.append(
                    f"Dataset '{name}', image {d['image_id']!r} ({d['file_name']}): box "
                    f"{list(a['bbox'])} ({BoxMode(mode).name}) is not finite or has a negative "
                    f"width or height"
                )
    return problems


def check_dataset_dicts(name, dicts):
    """Raise a ValueError naming the first ``dataset_problems`` of dataset ``name``, if any."""
    problems = dataset_problems(name, dicts)
    if problems:
        more = f"\n... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError("\n".join(problems[:5]) + more + "\n(tools/check_dataset.py lists all)")


def get_multilabel_dataset_dicts(
    names,
    filter_unlabeled=True,
    proposal_files=None,
    check_classes=True,
):
    """Load, check (``dataset_problems``) and concatenate the dataset dicts of ``names`` (the
    multi-label analogue of detectron2's ``get_detection_dataset_dicts``).

    Args:
        filter_unlabeled (bool): drop images whose ``multi_labels`` is empty (the Trainer
            passes ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` for training and evaluation alike;
            the multi-label literature drops them from both).
        proposal_files (list[str] or None): one detectron2 proposal file per dataset (empty
            or None: no proposals).
        check_classes (bool): the datasets must have the same ``thing_classes`` (not for
            images whose labels are hidden, e.g. a folder of photos without any).
    """
    if isinstance(names, str):
        names = [names]
    if isinstance(proposal_files, str):
        raise TypeError(
            f"Proposal files must be a list, one per dataset, got the string {proposal_files!r}"
        )
    proposal_files = proposal_files or None
    if proposal_files is not None and len(proposal_files) != len(names):
        raise ValueError(
            f"{len(proposal_files)} proposal files for {len(names)} datasets {list(names)}: "
            f"DATASETS.PROPOSAL_FILES_TRAIN/TEST must list one file per dataset"
        )
    all_dicts = []
    for i, name in enumerate(names):
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"Dataset '{name}' is empty")
        check_dataset_dicts(name, dicts)
        if proposal_files is not None:
            dicts = load_proposals_into_dataset(dicts, proposal_files[i])
        all_dicts.append(dicts)
    dicts = list(itertools.chain.from_iterable(all_dicts))
    if filter_unlabeled:
        kept = [d for d in dicts if d["multi_labels"]]
        logger.info(f"Dropped {len(dicts) - len(kept)} images without labels from {list(names)}")
        if not kept:
            raise ValueError(
                f"No image of {list(names)} has a label, and DATALOADER.FILTER_EMPTY_ANNOTATIONS "
                f"drops images without labels: set it False to keep them (e.g. to time or run "
                f"a model on unlabelled images)"
            )
        dicts = kept
    if len(names) > 1 and check_classes:
        check_metadata_consistency("thing_classes", names)
    return dicts


def training_dataset_dicts(cfg):
    """The training images of ``cfg``, each once: those of ``DATASETS.TRAIN`` (without labels
    dropped by ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``), then, for the datasets of
    ``DATASETS.UNLABELED``, every image with its labels and boxes hidden (``multi_labels``
    empty, ``unlabeled`` True); with their proposals where the config loads them."""
    proposal_files = list(cfg.DATASETS.PROPOSAL_FILES_TRAIN) if cfg.MODEL.LOAD_PROPOSALS else []
    if proposal_files and len(proposal_files) != len(cfg.DATASETS.TRAIN):
        raise ValueError(
            f"{len(proposal_files)} proposal files for {len(cfg.DATASETS.TRAIN)} datasets "
            f"{list(cfg.DATASETS.TRAIN)}: DATASETS.PROPOSAL_FILES_TRAIN must list one file per "
            "dataset"
        )
    files = dict(zip(cfg.DATASETS.TRAIN, proposal_files))

    def dicts_of(names, **kwargs):
        if not names:
            return []
        proposals = [files[n] for n in names] if files else None
        return get_multilabel_dataset_dicts(names, **kwargs, proposal_files=proposals)

    unlabeled = [n for n in cfg.DATASETS.TRAIN if n in cfg.DATASETS.UNLABELED]
    labelled = [n for n in cfg.DATASETS.TRAIN if n not in unlabeled]
    hidden = {"multi_labels": [], "annotations": [], "unlabeled": True}
    return dicts_of(labelled, filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS) + [
        {**d, **hidden} for d in dicts_of(unlabeled, filter_unlabeled=False, check_classes=False)
    ]


def with_unlabeled_share(dicts, share):
    """``dicts`` with their labelled images repeated (whole copies) so that the unlabeled ones
    (``unlabeled`` True) make at most ``share`` of them; the stream's share is logged."""
    labelled = [d for d in dicts if not d.get("unlabeled")]
    unlabeled = len(dicts) - len(labelled)
    if not unlabeled or not labelled:
        return dicts
    copies = max(1, math.ceil(unlabeled * (1 - share) / (share * len(labelled))))
    logger.info(
        f"Training stream: {len(labelled)} labelled images x {copies} and {unlabeled} unlabeled "
        f"ones: {unlabeled / (unlabeled + copies * len(labelled)):.0%} of each batch unlabeled "
        f"on average (DATASETS.UNLABELED_SHARE {share:g} at most)"
    )
    return labelled * (copies - 1) + dicts


def thing_classes_of(dataset_name) -> list[str]:
    """The class names of a registered dataset: its metadata's ``thing_classes``; a dataset
    registered without them (``register_coco_multilabel`` with no metadata) is loaded once,
    which reads them from its json."""
    metadata = MetadataCatalog.get(dataset_name)
    if metadata.get("thing_classes") is None and dataset_name in DatasetCatalog:
        DatasetCatalog.get(dataset_name)
    classes = metadata.get("thing_classes")
    if classes is None:
        raise KeyError(
            f"Dataset '{dataset_name}' has no thing_classes in its metadata, and loading it "
            f"did not set them: register it with metadata={{'thing_classes': [...]}}"
        )
    return list(classes)


def num_classes_of(dataset_name) -> int:
    """Number of classes of a registered dataset (:func:`thing_classes_of`)."""
    return len(thing_classes_of(dataset_name))
