"""MultiLabelDatasetMapper: a dataset dict -> the model's input (image, K-hot labels, proposals)."""

import copy
import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode, Instances

from .augmentation import build_augmentation
from .build import num_classes_of
from .image_files import read_image
from .proposals import check_proposal_boxes, fetch_proposals
from .teacher_cache import fetch_teacher_targets
from .teacher_targets import TARGET_FIELDS

logger = logging.getLogger(__name__)


def whole_image_proposal(height, width):
    """One proposal covering the image, score 1 (so that a score-scaled RoI keeps its
    features): the fallback when an image has none left."""
    proposals = Instances((height, width))
    proposals.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, width, height]]))
    proposals.objectness_logits = torch.ones(1)
    return proposals


class MultiLabelDatasetMapper:
    """Read an image, apply the augmentations to it and to its proposals, and return

    - ``image``: uint8 tensor [C, H, W] in ``image_format``, after augmentation;
    - ``multi_labels``: float tensor [K], 1 for each class present;
    - ``ignored_labels``: float tensor [K], 1 for each class left out of evaluation (VOC's
      difficult-only classes), when the dataset dict has them;
    - ``proposals``: ``Instances`` with ``proposal_boxes`` [R, 4] (augmented image pixels) and
      ``objectness_logits`` [R], when proposals are loaded (at least the whole image);
    - ``height``, ``width`` (original size, for ``detector_postprocess``), ``image_id``,
      ``file_name``.
    """

    @configurable
    def __init__(
        self,
        is_train,
        *,
        augmentations,
        image_format,
        num_classes,
        load_proposals=False,
        proposal_topk=None,
        proposal_min_size=0.0,
        teacher_cache=None,
        teacher_cache_fields=TARGET_FIELDS,
    ):
        """``teacher_cache`` (an opened teacher cache, for training): adds ``"teacher"``, the
        teacher's cached ``teacher_cache_fields`` for the augmentation drawn
        (``fetch_teacher_targets``).
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.num_classes = num_classes
        self.load_proposals = load_proposals
        self.proposal_topk = proposal_topk
        self.proposal_min_size = proposal_min_size
        self._proposal_stores = {}  # opened on first use, in each data-loader worker
        self.teacher_cache, self.teacher_cache_fields = teacher_cache, teacher_cache_fields
        mode = "training" if is_train else "inference"
        logger.info(f"[MultiLabelDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True, dataset_name=None):
        """``dataset_name`` (default: the first train dataset with labels, or test dataset)
        gives the class count."""
        if dataset_name is None:
            labelled = [n for n in cfg.DATASETS.TRAIN if n not in cfg.DATASETS.UNLABELED]
            dataset_name = (labelled if is_train else cfg.DATASETS.TEST)[0]
        if min(cfg.INPUT.MIN_SIZE_TRAIN) <= 0 or cfg.INPUT.MIN_SIZE_TEST < 0:
            raise ValueError(
                f"INPUT.MIN_SIZE_TRAIN {cfg.INPUT.MIN_SIZE_TRAIN} and INPUT.MIN_SIZE_TEST "
                f"{cfg.INPUT.MIN_SIZE_TEST} must be image sizes > 0"
            )
        return {
            "is_train": is_train,
            "augmentations": build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": num_classes_of(dataset_name),
            "load_proposals": cfg.MODEL.LOAD_PROPOSALS,
            "proposal_topk": (
                cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN
                if is_train
                else cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST
            ),
            "proposal_min_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
        }

    def _labels(self, dataset_dict, field="multi_labels"):
        labels = torch.zeros(self.num_classes)
        indices = dataset_dict[field]
        if len(indices) and (min(indices) < 0 or max(indices) >= self.num_classes):
            raise ValueError(
                f"Image {dataset_dict['image_id']!r} has label indices {list(indices)} outside "
                f"[0, {self.num_classes}) (the dataset's thing_classes)"
            )
        labels[list(indices)] = 1.0
        return labels

    def __call__(self, dataset_dict, image=None):
        """``image``: the dict's image as ``read_image`` gives it, when the caller has read it
        (the teacher cache writer maps each image through several mappers)."""
        dataset_dict = copy.deepcopy(dataset_dict)
        if image is None:
            image = read_image(dataset_dict, self.image_format)
        dataset_dict.setdefault("height", image.shape[0])  # (a label list gives no sizes)
        dataset_dict.setdefault("width", image.shape[1])
        aug_input = T.AugInput(image)
        try:
            transforms = self.augmentations(aug_input)
        except (ValueError, AssertionError) as e:  # e.g. a 10000 x 20 image resized to 0 rows
            raise ValueError(
                f"Image {dataset_dict['image_id']!r} ({dataset_dict['file_name']}), "
                f"{image.shape[0]}x{image.shape[1]}, cannot be resized by the INPUT settings "
                f"(MIN_SIZE_*, MAX_SIZE_*): {e}; leave it out or change them"
            ) from e
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        dataset_dict["multi_labels"] = self._labels(dataset_dict)
        if "ignored_labels" in dataset_dict:  # VOC's difficult-only classes, left out of AP
            dataset_dict["ignored_labels"] = self._labels(dataset_dict, "ignored_labels")

        if self.teacher_cache is not None:
            flipped = any(isinstance(t, T.HFlipTransform) for t in transforms)
            dataset_dict["teacher"] = fetch_teacher_targets(
                self.teacher_cache,
                dataset_dict["image_id"],
                image_shape,
                flipped,
                self.teacher_cache_fields,
            )
        if self.load_proposals:
            source = dataset_dict.get("proposal_file", "the proposal pickle")
            fetch_proposals(dataset_dict, self._proposal_stores)
            if "proposal_boxes" not in dataset_dict:
                raise KeyError(
                    f"Image {dataset_dict['image_id']!r} has no proposals but "
                    f"MODEL.LOAD_PROPOSALS is on: set DATASETS.PROPOSAL_FILES_TRAIN/TEST for "
                    f"this dataset"
                )
            if len(dataset_dict["proposal_boxes"]) == 0:
                h, w = dataset_dict["height"], dataset_dict["width"]
                dataset_dict["proposal_boxes"] = np.array([[0, 0, w, h]], dtype=np.float32)
                dataset_dict["proposal_objectness_logits"] = np.ones(1, dtype=np.float32)
                dataset_dict["proposal_bbox_mode"] = BoxMode.XYXY_ABS
            check_proposal_boxes(dataset_dict, source)
            # transform_proposals keeps the first top-k: the best, whatever the file's order
            order = np.argsort(
                -np.asarray(dataset_dict["proposal_objectness_logits"]), kind="stable"
            )
            for key in ("proposal_boxes", "proposal_objectness_logits"):
                dataset_dict[key] = np.asarray(dataset_dict[key])[order]
            utils.transform_proposals(
                dataset_dict,
                image_shape,
                transforms,
                proposal_topk=self.proposal_topk,
                min_box_size=self.proposal_min_size,
            )
            if len(dataset_dict["proposals"]) == 0:  # every box was smaller than min_box_size
                dataset_dict["proposals"] = whole_image_proposal(*image_shape)
        # Ground-truth boxes are read by the evaluators from the dataset, not by the model.
        for key in ("annotations", "proposal_file", "proposal_index"):
            dataset_dict.pop(key, None)
        return dataset_dict
