"""The one format in which a teacher hands a student what to learn from, online
(``TeacherHook``) or cached (``tools/cache_teacher.py``): per image, its softened image scores
p'_T [K] and, per RoI, its box, proposal score and fc7 feature f_T. Data and modeling both
use this leaf module (data never imports modeling)."""

import numpy as np

PER_ROI_FIELDS = ("proposal_boxes", "proposal_scores", "roi_features")
TARGET_FIELDS = ("soft_scores", *PER_ROI_FIELDS)
# each RoI's offset and scale in a cache of MODEL.DISTILL.TEACHER_CACHE_FEATURES "uint8"
UINT8_FIELDS = ("roi_feature_offset", "roi_feature_scale")


def target_store_fields(num_classes, feature_dim, feature_encoding="float16"):
    """The fields of a teacher cache store: {name: (dtype, shape of one row, one row per
    image)}; per-RoI fields have one row per RoI. Features are kept in float16, or in uint8
    with each RoI's offset and scale (:func:`encode_uint8`)."""
    fields = {
        "soft_scores": ("float32", (num_classes,), True),
        "proposal_boxes": ("float32", (4,)),
        "proposal_scores": ("float32", ()),
        "roi_features": (feature_encoding, (feature_dim,)),
    }
    if feature_encoding == "uint8":
        fields.update({name: ("float32", ()) for name in UINT8_FIELDS})
    return fields


def encode_uint8(features):
    """[N, D] float features -> (uint8 codes [N, D], offsets [N], scales [N]): each RoI's D
    values mapped linearly from [its min, its max] onto 0..255, so that
    :func:`decode_uint8` is off by at most half of (max - min) / 255 (exact for a constant
    RoI and for the min, e.g. fc7's zeros after ReLU)."""
    features = np.asarray(features, dtype=np.float32)
    offset = features.min(axis=1)
    scale = np.where(features.max(axis=1) > offset, (features.max(axis=1) - offset) / 255, 1.0)
    offset, scale = offset.astype(np.float32), scale.astype(np.float32)
    codes = np.rint((features - offset[:, None]) / scale[:, None]).clip(0, 255).astype(np.uint8)
    return codes, offset, scale


def decode_uint8(codes, offset, scale):
    """The float32 features [N, D] of :func:`encode_uint8`'s codes."""
    return codes.astype(np.float32) * scale[:, None] + offset[:, None]


def teacher_target_settings(cfg):
    """The keyword arguments of ``modeling.teacher.teacher_targets`` for a student config's
    ``MODEL.DISTILL``."""
    d = cfg.MODEL.DISTILL
    if d.ROI_SELECT not in ("all", "top"):
        raise ValueError(f"MODEL.DISTILL.ROI_SELECT must be 'all' or 'top', got {d.ROI_SELECT!r}")
    for key in ("TEACHER_CLS_TEMPERATURE", "TEACHER_DET_TEMPERATURE"):
        if d[key] <= 0:
            raise ValueError(f"MODEL.DISTILL.{key} must be > 0, got {d[key]}")
    return {
        "cls_temperature": d.TEACHER_CLS_TEMPERATURE,
        "det_temperature": d.TEACHER_DET_TEMPERATURE,
        "roi_topk": d.ROI_TOPK if d.ROI_SELECT == "top" else 0,
    }


def used_fields(cfg):
    """The target fields the student's losses read: ``soft_scores`` for L_p' (Eq. 10), the
    RoIs' fields for L_f (Eq. 3); a stage that has one of them off (the authors' two stages)
    loads nothing for it from a cache."""
    d = cfg.MODEL.DISTILL
    prediction = ("soft_scores",) if d.PREDICTION_WEIGHT > 0 else ()
    return prediction + (PER_ROI_FIELDS if d.FEATURE_WEIGHT > 0 else ())
