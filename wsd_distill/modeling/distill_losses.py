"""The distillation losses of Liu et al., ACM MM 2018, as pure functions (their targets, p'_T
and the teacher's RoI features, come from ``teacher.teacher_targets``).

Both prediction losses (``loss_cls`` in the student and :func:`prediction_distill_loss`) are
binary cross-entropies summed over classes and averaged over images, like the teacher's
``loss_wsddn``, so their weights are comparable.
"""

from torch.nn import functional as F


def prediction_distill_loss(student_logits, teacher_soft_scores, inverse_temperature, kind="bce"):
    """Prediction-level distillation, averaged over images:

    - ``"bce"`` (Eq. 10): ``BCE(sigmoid(z / t), p'_T)`` summed over classes (no ``t**2``
      factor: scale it with its loss weight);
    - ``"softmax"`` (beyond the paper): ``t**2 KL(q_T || softmax(z / t))`` over the classes,
      ``q_T = p'_T / sum_k p'_T``: the teacher's scores as one distribution over classes, the
      cross-entropy with normalized targets of multi-label softmax training (Mahajan et al.,
      ECCV 2018) and Hinton's ``t**2``. A per-image shift of z leaves it unchanged, so it
      teaches how the classes of a photo rank against each other but not how many are present:
      a WSDDN's class softmax under-scores the present classes of a photo of many labels, and
      L_p (the labels) alone sets the level.

    Args:
        student_logits: [B, K] pre-sigmoid scores z; teacher_soft_scores: [B, K] in (0, 1).
        inverse_temperature: 1 / t, a number, or for "bce" a learnable tensor [K] (per class).
    """
    target = teacher_soft_scores.detach()
    z = student_logits * inverse_temperature
    if kind == "softmax":
        q = target / target.sum(1, keepdim=True)
        kl = (q * (q.log() - F.log_softmax(z, dim=1))).sum()
        return kl / inverse_temperature**2 / len(target)
    bce = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    return bce.sum() / len(target)


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
