"""The teacher cache: the frozen teacher's targets for every training image and every
augmentation the student's loader can draw (each of ``INPUT.MIN_SIZE_TRAIN``, unflipped and
flipped), written once by ``tools/cache_teacher.py``, so KD trains without the teacher in the loop.

It is a :class:`RaggedStore` keyed by ``(image_id, height, width, flipped)`` of the augmented
image, whose fields are those of ``teacher_targets`` (the format the online TeacherHook hands
the student too): ``soft_scores`` [K] (p'_T of Eq. 10, at the cached temperatures),
``proposal_boxes`` [N, 4] (augmented-image pixels), ``proposal_scores`` [N] and
``roi_features`` [N, D] (float16) of the N RoIs that L_f uses (``MODEL.DISTILL.ROI_TOPK``).
"""

import json

import numpy as np
from detectron2.data import transforms as T

from ..utils.digests import file_sha1, ids_digest
from ..utils.ragged_store import RaggedStore
from .augmentation import resize_augmentation
from .proposals import image_records
from .teacher_targets import TARGET_FIELDS, teacher_target_settings


def cache_variants(cfg):
    """The ``(shortest side, flipped)`` pairs the training augmentation draws from."""
    if cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING != "choice":
        raise ValueError(
            "A teacher cache needs INPUT.MIN_SIZE_TRAIN_SAMPLING 'choice' (a finite set of "
            f"sizes), not {cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING!r}"
        )
    if cfg.INPUT.RANDOM_FLIP not in ("horizontal", "none"):
        raise ValueError(
            "A teacher cache covers INPUT.RANDOM_FLIP 'horizontal' or 'none', not "
            f"{cfg.INPUT.RANDOM_FLIP!r}"
        )
    if cfg.INPUT.CROP.ENABLED:
        raise ValueError(
            "A teacher cache holds whole images at each size and flip, and INPUT.CROP.ENABLED "
            "draws a new crop at each step: train with the teacher in the loop "
            "(MODEL.DISTILL.TEACHER_CACHE '') or set INPUT.CROP.ENABLED False"
        )
    flips = (False, True) if cfg.INPUT.RANDOM_FLIP == "horizontal" else (False,)
    return [(int(size), flipped) for size in cfg.INPUT.MIN_SIZE_TRAIN for flipped in flips]


def variant_augmentations(cfg, size, flipped):
    """The training augmentation with its random choices fixed to ``(size, flipped)``."""
    augmentations = [resize_augmentation(cfg, (size,), True)]
    if flipped:
        augmentations.append(T.RandomFlip(prob=1.0, horizontal=True, vertical=False))
    return augmentations


def cache_key(image_id, image_shape, flipped):
    return (image_id, int(image_shape[0]), int(image_shape[1]), int(flipped))


def teacher_cache_settings(cfg, dataset_dicts):
    """What a cache of ``dataset_dicts`` depends on; a cache made with other settings is refused."""
    d, images = cfg.MODEL.DISTILL, image_records(dataset_dicts)
    if d.TEACHER_DROPOUT:
        raise ValueError(
            "MODEL.DISTILL.TEACHER_DROPOUT draws the teacher's dropout anew at every step, where "
            "a teacher cache holds one draw: train with the teacher in the loop "
            "(MODEL.DISTILL.TEACHER_CACHE '') or set TEACHER_DROPOUT False"
        )
    targets = teacher_target_settings(cfg)
    return {
        "content": "teacher_targets",
        "teacher_weights_sha1": file_sha1(d.TEACHER_WEIGHTS),
        "teacher_temperatures": [targets["cls_temperature"], targets["det_temperature"]],
        "roi_topk": targets["roi_topk"],
        "teacher_tta": None,  # (a cache made with the removed MODEL.DISTILL.TEACHER_TTA: refused)
        "teacher_feature_dim": d.TEACHER_FEATURE_DIM,
        "roi_feature_encoding": "float16",  # (a cache of the removed 8-bit encoding: refused)
        "variants": cache_variants(cfg),
        "max_size": cfg.INPUT.MAX_SIZE_TRAIN,
        # the images by id, file (last two path parts) and bytes: another split with the same
        # ids, or photos rewritten since, are told apart; a moved dataset root is not
        "images_sha1": ids_digest(
            sorted(
                f"{d['image_id']}\t{name}\t{sha1}"
                for d, name, sha1 in zip(
                    dataset_dicts, images["image_names"], images["image_sha1s"]
                )
            )
        ),
    }


def open_teacher_cache(cfg, dataset_dicts):
    """Open ``MODEL.DISTILL.TEACHER_CACHE`` and check, before training, that it was made by this
    teacher, at these temperatures and augmentations, for these images."""
    path = cfg.MODEL.DISTILL.TEACHER_CACHE
    store = RaggedStore(path)
    expected = json.loads(json.dumps(teacher_cache_settings(cfg, dataset_dicts)))
    found = {k: store.meta.get(k) for k in expected}
    different = [k for k in expected if found[k] != expected[k]]
    if different:
        what = ", ".join(
            f"{k} is {found[k]!r}, the config asks for {expected[k]!r}" for k in different
        )
        raise ValueError(
            f"Teacher cache {path} does not fit this config: {what}. "
            f"Make it again with tools/cache_teacher.py and this config."
        )
    return store


def fetch_teacher_targets(store, image_id, image_shape, flipped, fields=TARGET_FIELDS):
    """The cached ``"teacher"`` entry (``fields``) of one augmented image, as float32 NumPy
    arrays: a data-loader worker pickles these into its message, where each tensor would cost a
    shared-memory segment and a file-descriptor hand-over (docs/benchmarks.md, "Training
    steps")."""
    key = cache_key(image_id, image_shape, flipped)
    try:
        i = store.row_of(key)
    except KeyError:
        raise KeyError(
            f"Teacher cache {store.path} has no entry for image {image_id!r} at "
            f"{image_shape[0]}x{image_shape[1]}"
            f"{', flipped' if flipped else ''}: it was made for other INPUT sizes; run "
            "tools/cache_teacher.py again"
        ) from None
    return {name: store.get(i, name, np.float32) for name in fields}
