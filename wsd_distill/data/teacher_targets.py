"""The one format in which a teacher hands a student what to learn from, online
(``TeacherHook``) or cached (``tools/cache_teacher.py``): per image, its softened image scores
p'_T [K] and, per RoI, its box, proposal score and fc7 feature f_T. Data and modeling both
use this leaf module (data never imports modeling)."""

PER_ROI_FIELDS = ("proposal_boxes", "proposal_scores", "roi_features")
TARGET_FIELDS = ("soft_scores", *PER_ROI_FIELDS)


def target_store_fields(num_classes, feature_dim):
    """The fields of a teacher cache store: {name: (dtype, shape of one row, one row per
    image)}; per-RoI fields have one row per RoI; the features in float16."""
    return {
        "soft_scores": ("float32", (num_classes,), True),
        "proposal_boxes": ("float32", (4,)),
        "proposal_scores": ("float32", ()),
        "roi_features": ("float16", (feature_dim,)),
    }


def teacher_target_settings(cfg):
    """The keyword arguments of ``modeling.teacher.teacher_targets`` for a student config's
    ``MODEL.DISTILL``."""
    d = cfg.MODEL.DISTILL
    return {
        "cls_temperature": d.TEACHER_TEMPERATURE,
        "det_temperature": d.TEACHER_TEMPERATURE,
        "roi_topk": d.ROI_TOPK,
    }


def used_fields(cfg):
    """The target fields the student's losses read: ``soft_scores`` for L_p' (Eq. 10), the
    RoIs' fields for L_f (Eq. 3); a stage that has one of them off (the authors' two stages)
    loads nothing for it from a cache."""
    d = cfg.MODEL.DISTILL
    prediction = ("soft_scores",) if d.PREDICTION_WEIGHT > 0 else ()
    return prediction + (PER_ROI_FIELDS if d.FEATURE_WEIGHT > 0 else ())
