"""The distillation losses of Liu et al., ACM MM 2018, as pure functions.

Both prediction losses (``loss_cls`` in the student and :func:`prediction_distill_loss`) are
binary cross-entropies summed over classes and averaged over images, like the teacher's
``loss_wsddn``, so their weights are comparable.
"""

from torch.nn import functional as F

from .wsddn import wsddn_scores


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


def prediction_distill_loss(student_logits, teacher_soft_scores, t):
    """Prediction-level distillation (Eq. 10): ``BCE(sigmoid(z / t), p'_T)``, summed over
    classes and averaged over images (no ``t**2`` factor: scale it with its loss weight).

    Args:
        student_logits: [B, K] pre-sigmoid scores z; teacher_soft_scores: [B, K] in (0, 1).
    """
    target = teacher_soft_scores.detach()
    return F.binary_cross_entropy_with_logits(student_logits / t, target, reduction="sum") / len(
        target
    )


def roi_feature_distill_loss(student_roi_feats, teacher_roi_feats):
    """Feature-level distillation (Eq. 3): ``1/(2N) sum_i ||f_T,i - f_S,i||^2`` over N RoIs.

    Args:
        student_roi_feats, teacher_roi_feats: [N, D]; no gradient reaches the teacher.
    """
    if len(student_roi_feats) == 0:
        return student_roi_feats.sum() * 0
    diff = teacher_roi_feats.detach() - student_roi_feats
    return diff.pow(2).sum() / (2 * len(diff))
