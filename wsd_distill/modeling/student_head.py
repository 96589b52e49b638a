"""The student's head: what turns its last feature map into the classifier's input, for the whole
image and, for feature distillation (L_f), for each of the teacher's RoIs on the same map; and
the CSRA classifier, which classifies the map itself."""

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_pool

from .box_average_pool import box_average_pool
from .box_head import FCBoxHead


class StudentHead(nn.Module):
    """``kind`` "pool": the map's global average (or max) -> [C]. ``kind`` "fc" (VGG-16's): the
    map pooled to P x P (pool5) -> fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> [fc_dim].
    ``kind`` "csra": the map itself (for :class:`CSRAClassifier`), its RoIs pooled as "pool"'s.

    A RoI goes through the same layers, its box pooled where the image is pooled whole: the
    exact box average (:func:`box_average_pool`; for the whole image on a map whose sides are
    multiples of P, exactly the image's pooling), or, for "max", Fast R-CNN's RoI max pooling
    as the authors' (torchvision ``roi_pool``; its integer bins make the whole-image RoI
    close to, not equal to, the image's max pooling).

    Args:
        input_shape (ShapeSpec): the map's channels and stride.
        kind (str): "pool", "fc" or "csra".
        pooling (str): "avg" or "max".
        resolution (int): P of the "fc" head ("pool" pools to 1 x 1).
        fc_dim (int), dropout (float): fc6 / fc7 of the "fc" head.
    """

    def __init__(
        self, input_shape, kind="pool", pooling="avg", resolution=7, fc_dim=4096, dropout=0.5
    ):
        super().__init__()
        self.kind = kind
        self.pooling = pooling
        self.resolution = resolution if kind == "fc" else 1
        self.scale = 1.0 / input_shape.stride
        if kind == "fc":
            self.layers = FCBoxHead(input_shape.channels * self.resolution**2, fc_dim, dropout)
            self.output_dim = fc_dim
        else:
            self.layers = nn.Flatten()
            self.output_dim = input_shape.channels

    def pool_image(self, feature):
        """[B, C, H, W] -> [B, C, P, P]: the image's pooling (VGG-16's pool5 for "fc")."""
        pool = F.adaptive_avg_pool2d if self.pooling == "avg" else F.adaptive_max_pool2d
        return pool(feature, self.resolution)

    def pool_rois(self, feature, boxes):
        """[B, C, H, W] and ``boxes`` (list[Boxes], per image, in the network's input pixels)
        -> [N, C, P, P]: each box pooled as the image is."""
        if self.pooling == "avg":
            return box_average_pool(feature, boxes, self.scale, self.resolution)
        return roi_pool(feature, [b.tensor for b in boxes], self.resolution, self.scale)

    def forward(self, feature):
        """[B, C, H, W] -> [B, output_dim], the classifier's input ("csra": the map itself)."""
        if self.kind == "csra":
            return feature
        return self.layers(self.pool_image(feature))

    def forward_rois(self, feature, boxes, box_scores=None):
        """The same layers on RoIs -> [N, output_dim]; ``box_scores`` [N], if given, multiply
        each pooled RoI first (the authors' ``score_scale * ebscore``)."""
        pooled = self.pool_rois(feature, boxes)
        if box_scores is not None:
            pooled = pooled * box_scores.view(-1, 1, 1, 1).to(pooled.dtype)
        return self.layers(pooled)


class CSRAClassifier(nn.Module):
    """Class-specific residual attention (Zhu & Wu, "Residual Attention: A Simple but Effective
    Method for Multi-Label Recognition", ICCV 2021), one head with T = infinity: the scores
    s_k = w_k . x / ||w_k|| of a bias-free 1x1 conv at every position, and the logit
    ``mean(s_k) + lam * max(s_k)`` over positions (the reference's ``CSRA``, ``T == 99``).

    Args:
        channels (int): C of the map; num_classes (int): K; lam (float): lambda.
    """

    def __init__(self, channels, num_classes, lam=0.1):
        super().__init__()
        self.head = nn.Conv2d(channels, num_classes, 1, bias=False)
        self.lam = lam

    def forward(self, feature):
        """[B, C, H, W] -> logits [B, K]."""
        norm = torch.linalg.vector_norm(self.head.weight.flatten(1), dim=1)  # [K]
        scores = (self.head(feature) / norm.view(1, -1, 1, 1)).flatten(2)  # [B, K, HW]
        return scores.mean(dim=2) + self.lam * scores.amax(dim=2)
