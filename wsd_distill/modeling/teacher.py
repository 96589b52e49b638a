"""The frozen teacher of a student config, and its targets for the student
(:func:`teacher_targets`, in the format of ``data.teacher_targets``): the same whether the
teacher runs online (``TeacherHook``) or was cached beforehand (``tools/cache_teacher.py``)."""

import logging
import os

import torch
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from torch import nn

from ..checkpoint import load_trained_weights
from ..config import add_wsd_distill_config, merge_config_file
from .backbone.timm_backbone import fill_pretrained_normalization, fold_frozen_batch_norm
from .box_head import box_head_width
from .wsddn import WSDDN, region_objectness, top_regions, wsddn_scores


def wsddn_soft_scores(cls_logits, det_logits, num_regions, t_c, t_d, eps=1e-6):
    """The teacher's softened image scores (Eq. 10):
    ``p'_T = sum_r softmax_c(Mc / t_c) * softmax_r(Md / t_d)``, the region softmax taken over
    each image's regions, clamped into (eps, 1 - eps).

    Args:
        cls_logits, det_logits: [R, K], the regions of all images in order.
        num_regions (list[int]): regions per image, summing to R.
    Returns:
        [B, K]
    """
    return wsddn_scores(cls_logits / t_c, det_logits / t_d, num_regions, eps)[1]


def teacher_targets(outputs, cls_temperature=0.5, det_temperature=0.5, roi_topk=0):
    """What the student distils from, per image, from ``WSDDN.teacher_outputs``:

    - ``soft_scores`` [K]: p'_T at the teacher's temperatures (Eq. 10), the target of L_p';
    - ``proposal_boxes`` [N, 4] (the network's input pixels), ``proposal_scores`` [N] (their
      proposal scores, e.g. EdgeBoxes') and ``roi_features`` [N, D] (the teacher's RoI fc7):
      the N RoIs of L_f (Eq. 3), all of them, or the ``roi_topk`` best by ``max_k S_rk``.

    Args:
        outputs: one dict of ``teacher_outputs``.
    Returns a list of such dicts of float32 tensors, one per image.
    """
    n = outputs["num_regions"]
    cls_logits, det_logits = outputs["cls_logits"].float(), outputs["det_logits"].float()
    soft = wsddn_soft_scores(cls_logits, det_logits, n, cls_temperature, det_temperature)
    keep = top_regions(region_objectness(outputs["region_scores"].float()), n, roi_topk)
    features = outputs["roi_features"].float()
    targets = []
    for p, k, s, f in zip(outputs["proposals"], keep, soft, features.split(n)):
        targets.append(
            {
                "soft_scores": s,
                "proposal_boxes": p.proposal_boxes.tensor[k].float(),
                "proposal_scores": p.objectness_logits[k].float(),
                "roi_features": f[k],
            }
        )
    return targets


def get_teacher_cfg(cfg):
    """The teacher's config, read from ``MODEL.DISTILL.TEACHER_CONFIG`` (with wsd-distill's keys);
    its weights are ``MODEL.DISTILL.TEACHER_WEIGHTS`` and it runs on the student's device."""
    path = cfg.MODEL.DISTILL.TEACHER_CONFIG
    if not path:
        raise ValueError(
            "MODEL.DISTILL.ENABLED is on but MODEL.DISTILL.TEACHER_CONFIG is empty: "
            "name the teacher's config file"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.DISTILL.TEACHER_CONFIG: no such file '{path}'")
    teacher_cfg = add_wsd_distill_config(get_cfg())
    merge_config_file(teacher_cfg, path)
    teacher_cfg.MODEL.WEIGHTS = cfg.MODEL.DISTILL.TEACHER_WEIGHTS
    teacher_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    fill_pretrained_normalization(teacher_cfg)
    architecture = teacher_cfg.MODEL.META_ARCHITECTURE
    if not issubclass(META_ARCH_REGISTRY.get(architecture), WSDDN):
        raise ValueError(f"MODEL.DISTILL.TEACHER_CONFIG '{path}' is a {architecture}, not a WSDDN")
    teacher_cfg.freeze()
    return teacher_cfg


def check_teacher_fits(cfg, teacher_cfg):
    """The teacher's classes and RoI-feature width must be the student's; a student that
    pools its RoIs for L_f otherwise than the teacher (scaled by their proposal scores or not)
    is warned."""
    d, classes = cfg.MODEL.DISTILL, cfg.MODEL.STUDENT.NUM_CLASSES
    scaled = teacher_cfg.MODEL.WSDDN.SCALE_ROI_BY_PROPOSAL_SCORE
    if d.FEATURE_WEIGHT > 0 and d.SCALE_ROI_BY_PROPOSAL_SCORE != scaled:
        logging.getLogger(__name__).warning(
            f"The teacher ({d.TEACHER_CONFIG}) has MODEL.WSDDN.SCALE_ROI_BY_PROPOSAL_SCORE "
            f"{scaled} but the student MODEL.DISTILL.SCALE_ROI_BY_PROPOSAL_SCORE "
            f"{d.SCALE_ROI_BY_PROPOSAL_SCORE}: L_f compares RoI features pooled two ways"
        )
    if teacher_cfg.MODEL.ROI_HEADS.NUM_CLASSES != classes:
        raise ValueError(
            f"The teacher ({d.TEACHER_CONFIG}) has MODEL.ROI_HEADS.NUM_CLASSES "
            f"{teacher_cfg.MODEL.ROI_HEADS.NUM_CLASSES} but the student has "
            f"MODEL.STUDENT.NUM_CLASSES {classes}"
        )
    width = box_head_width(teacher_cfg)
    if width != d.TEACHER_FEATURE_DIM:
        raise ValueError(
            f"The teacher ({d.TEACHER_CONFIG}) has RoI features of width {width} but "
            f"MODEL.DISTILL.TEACHER_FEATURE_DIM is {d.TEACHER_FEATURE_DIM}: set it to {width}"
        )
    mine, other = list(cfg.MODEL.CLASS_NAMES), list(teacher_cfg.MODEL.CLASS_NAMES)
    if mine and other and mine != other:
        differ = [(k, a, b) for k, (a, b) in enumerate(zip(mine, other)) if a != b]
        raise ValueError(
            f"The teacher ({d.TEACHER_CONFIG}) has its classes (MODEL.CLASS_NAMES) in another "
            f"order, or others: first differences (index, student, teacher): {differ[:5]}: its "
            f"soft scores would teach the wrong classes"
        )
    for name in cfg.DATASETS.TRAIN:
        mine = MetadataCatalog.get(name).get("thing_classes")
        for teacher_name in teacher_cfg.DATASETS.TRAIN:
            other = MetadataCatalog.get(teacher_name).get("thing_classes")
            if mine is not None and other is not None and list(mine) != list(other):
                raise ValueError(
                    f"The teacher was trained on '{teacher_name}' whose classes {list(other)} "
                    f"differ from the student's dataset '{name}' ({list(mine)})"
                )


def build_teacher(cfg):
    """The teacher of ``MODEL.DISTILL``: a WSDDN with its weights loaded, in eval mode (its
    dropout layers in training mode with ``TEACHER_DROPOUT``), frozen (its frozen norms folded
    into its convolutions: ``fold_frozen_batch_norm``), on ``MODEL.DEVICE``.
    Fails clearly when its weights or classes do not fit the student."""
    teacher_cfg = get_teacher_cfg(cfg)
    weights = teacher_cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "MODEL.DISTILL.TEACHER_WEIGHTS is empty: name the trained teacher's checkpoint"
        )
    check_teacher_fits(cfg, teacher_cfg)
    if not cfg.MODEL.LOAD_PROPOSALS:
        raise ValueError(
            "The teacher needs proposals: set MODEL.LOAD_PROPOSALS and "
            "DATASETS.PROPOSAL_FILES_TRAIN for the student"
        )
    # building draws random initial weights, all replaced by the checkpoint: the caller's
    # random stream (the student's dropout) stays as it would be without a teacher
    with torch.random.fork_rng(devices=[]):
        teacher = build_model(teacher_cfg)
    load_trained_weights(teacher, weights, "MODEL.DISTILL.TEACHER_WEIGHTS")
    fold_frozen_batch_norm(teacher.eval().requires_grad_(False))
    if cfg.MODEL.DISTILL.TEACHER_DROPOUT:  # dropout only: batch norm keeps its statistics
        for module in teacher.modules():
            if isinstance(module, nn.Dropout):
                module.train()
    return teacher
