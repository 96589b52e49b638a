"""The student's label loss L_p: the paper's binary cross-entropy, or the asymmetric loss of
Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021 (an option,
``MODEL.STUDENT.LABEL_LOSS "asl"``). Both are summed over classes and averaged over images, so
that a loss weight means the same for either."""

import torch
from torch.nn import functional as F


def asymmetric_loss(logits, labels, gamma_neg=4.0, gamma_pos=0.0, clip=0.05, eps=1e-8):
    """ASL as the reference trains COCO (``AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05,
    disable_torch_grad_focal_loss=True)`` in its train.py): each negative's probability shifted
    down by ``clip`` (p_m = max(p - clip, 0)), then focal weights (1 - p_t)^gamma, gamma_pos for
    the positives and gamma_neg for the negatives, computed without gradient (constants of the
    backward pass, as the reference's). Divided by the batch size (the reference sums over
    everything). gamma 0 and clip 0 give the BCE.

    Args:
        logits: [B, K]; labels: [B, K] in {0, 1}.
    Returns:
        a scalar: ``-sum(L) / B``.
    """
    labels = labels.to(logits.dtype)
    p = torch.sigmoid(logits)
    log_pos = F.logsigmoid(logits)
    if clip > 0:
        q = (1 - p + clip).clamp(max=1)  # 1 - p_m
        log_neg = torch.log(q.clamp(min=eps))
    else:
        q, log_neg = 1 - p, F.logsigmoid(-logits)
    loss = labels * log_pos + (1 - labels) * log_neg
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.no_grad():
            p_t = p * labels + q * (1 - labels)
            gamma = gamma_pos * labels + gamma_neg * (1 - labels)
            weight = torch.pow(1 - p_t, gamma)
        loss = loss * weight
    return -loss.sum() / len(logits)


def label_loss(logits, labels, kind="bce"):
    """L_p of ``MODEL.STUDENT.LABEL_LOSS``: "bce" (summed over classes, averaged over images)
    or "asl" (:func:`asymmetric_loss`, the reference's COCO setting). [B, K] -> scalar."""
    if kind == "asl":
        return asymmetric_loss(logits, labels)
    bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")
    return bce / len(labels)
