"""The distillation losses of Liu et al., ACM MM 2018, as pure functions (their targets, p'_T
and the teacher's RoI features, come from ``teacher.teacher_targets``).

Both prediction losses (``loss_cls`` in the student and :func:`prediction_distill_loss`) are
binary cross-entropies summed over classes and averaged over images, like the teacher's
``loss_wsddn``, so their weights are comparable.
"""

import numpy as np
from torch.nn import functional as F


def prediction_distill_loss(
    student_logits, teacher_soft_scores, inverse_temperature, class_weights=None
):
    """Prediction-level distillation (Eq. 10): ``BCE(sigmoid(z / t), p'_T)``, summed over
    classes and averaged over images (no ``t**2`` factor: scale it with its loss weight).

    Args:
        student_logits: [B, K] pre-sigmoid scores z; teacher_soft_scores: [B, K] in (0, 1).
        inverse_temperature: 1 / t, a number or a learnable tensor [K] (one per class).
        class_weights: [K] weight of each class's term (None: all 1), e.g.
            :func:`teacher_class_gate`.
    """
    target = teacher_soft_scores.detach()
    z = student_logits * inverse_temperature
    bce = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    if class_weights is not None:
        bce = bce * class_weights
    return bce.sum() / len(target)


def teacher_class_gate(teacher_ap, student_ap):
    """Which classes L_p' distils (``MODEL.DISTILL.PREDICTION_CLASS_WEIGHTS``): 1 where the
    teacher's AP on a held-out split is at least the AP of the student trained without KD on
    that split, 0 where the teacher ranks the class worse (its soft scores would teach the
    student its mistakes). A class without AP (NaN: no positive there) is kept.

    Args:
        teacher_ap, student_ap: per-class AP [K] on the same held-out images.
    Returns:
        list of K floats in {0, 1}.
    """
    teacher_ap, student_ap = np.asarray(teacher_ap, float), np.asarray(student_ap, float)
    if teacher_ap.shape != student_ap.shape:
        raise ValueError(f"per-class APs of different lengths: {teacher_ap} and {student_ap}")
    keep = ~(teacher_ap < student_ap)  # NaN compares False: kept
    return keep.astype(float).tolist()


def roi_feature_distill_loss(student_roi_feats, teacher_roi_feats, per_dim=False):
    """Feature-level distillation (Eq. 3): ``1/(2N) sum_i ||f_T,i - f_S,i||^2`` over N RoIs,
    divided by the width D too when ``per_dim``.

    Args:
        student_roi_feats, teacher_roi_feats: [N, D]; no gradient reaches the teacher.
    """
    if len(student_roi_feats) == 0:
        return student_roi_feats.sum() * 0
    diff = teacher_roi_feats.detach() - student_roi_feats
    loss = diff.pow(2).sum() / (2 * len(diff))
    return loss / diff.shape[1] if per_dim else loss
