"""The student's side of feature distillation: RoI features of its own maps, in the teacher's width."""

import torch
from detectron2.layers import cat
from detectron2.modeling.poolers import ROIPooler
from torch import nn


def box_mean_pool(feature, boxes, scale):
    """Mean of ``feature`` [B, C, H, W] over each box, reading the map as constant over each of
    its cells: box sums from the integral image, bilinearly interpolated at the box corners
    (exact for fractional boxes). A differentiable RoI average pooling whose cost, forward and
    backward, does not grow with the box sizes or a bin grid.

    Args:
        boxes (list[Boxes]): per image, XYXY boxes in input pixels.
        scale (float): feature cells per input pixel (1 / stride).
    Returns:
        [N, C], N the total number of boxes.
    """
    channels, height, width = feature.shape[1:]
    # integral image, channels last (cumsum over the outer dims vectorizes over C): [B, H + 1, W + 1, C]
    integral = nn.functional.pad(
        feature.permute(0, 2, 3, 1).cumsum(1).cumsum(2), (0, 0, 1, 0, 1, 0)
    )
    rows = integral.reshape(-1, channels)  # [B (H + 1) (W + 1), C]
    batch = cat(
        [
            torch.full((len(b),), i, dtype=torch.long, device=feature.device)
            for i, b in enumerate(boxes)
        ]
    )
    x1, y1, x2, y2 = (cat([b.tensor for b in boxes]) * scale).unbind(1)
    x1, x2 = x1.clamp(0, width), x2.clamp(0, width)
    y1, y2 = y1.clamp(0, height), y2.clamp(0, height)
    # box sum = I(x2, y2) - I(x1, y2) - I(x2, y1) + I(x1, y1), each I bilinear in 4 grid points:
    # one gather of 16 rows per box, weighted
    index, weight = [], []
    for x, y, sign in ((x2, y2, 1), (x1, y2, -1), (x2, y1, -1), (x1, y1, 1)):
        x0, y0 = x.floor().clamp(max=width - 1), y.floor().clamp(max=height - 1)
        wx, wy = x - x0, y - y0
        base = (batch * (height + 1) + y0.long()) * (width + 1) + x0.long()
        index += [base, base + 1, base + width + 1, base + width + 2]
        weight += [
            sign * (1 - wy) * (1 - wx),
            sign * (1 - wy) * wx,
            sign * wy * (1 - wx),
            sign * wy * wx,
        ]
    index, weight = torch.stack(index, 1), torch.stack(weight, 1)  # [N, 16]
    total = (
        rows[index.flatten()].view(len(index), 16, channels) * weight[:, :, None].to(rows.dtype)
    ).sum(1)
    return total / ((x2 - x1) * (y2 - y1)).clamp(min=1e-6)[:, None].to(rows.dtype)


class RoIFeatureAdapter(nn.Module):
    """RoI-pools each of the student's feature maps in ``levels`` on the given boxes and maps
    the pooled features to the teacher's RoI-feature width D with a 1x1 convolution, averaged
    over the P x P bins (one per level; C x D weights, the shape of the teacher's own res5 head:
    convolutions, then the mean), so each level regresses the teacher's f_T (Eq. 3).

    ``pooler_type`` is a detectron2 ``ROIPooler`` type (e.g. "ROIAlignV2", P = ``resolution``)
    or "BoxMean" (:func:`box_mean_pool`, the exact mean over the box; the bins' mean is what
    the 1x1 convolution sees in either case, and BoxMean's backward is far cheaper on CPU).

    Args:
        input_shapes (dict[str, ShapeSpec]): the student backbone's output shapes.
        levels (list[str]): feature maps to pool, e.g. ["res4"] or ["res4", "res5"].
        output_dim (int): D, the teacher's RoI-feature width.
    """

    def __init__(
        self,
        input_shapes,
        levels,
        output_dim,
        resolution=7,
        sampling_ratio=0,
        pooler_type="ROIAlignV2",
    ):
        super().__init__()
        missing = [level for level in levels if level not in input_shapes]
        if missing or not levels:
            raise KeyError(
                f"MODEL.DISTILL.FEATURE_LEVELS {list(levels)} must name backbone outputs ({sorted(input_shapes)}): "
                f"add them to the backbone's OUT_FEATURES"
            )
        self.levels = list(levels)
        self.scales = {level: 1.0 / input_shapes[level].stride for level in levels}
        self.poolers = None
        if pooler_type != "BoxMean":
            self.poolers = {
                level: ROIPooler(resolution, (self.scales[level],), sampling_ratio, pooler_type)
                for level in levels
            }
        self.adapters = nn.ModuleDict(
            {level: nn.Conv2d(input_shapes[level].channels, output_dim, 1) for level in levels}
        )

    def pool(self, level, feature, boxes):
        """[N, C, 1, 1]: the mean over the bins (a 1x1 convolution is linear, so it commutes
        with the mean: P^2 times less work in the adapter and its backward)."""
        if self.poolers is None:
            return box_mean_pool(feature, boxes, self.scales[level])[:, :, None, None]
        return self.poolers[level]([feature], boxes).mean(dim=(2, 3), keepdim=True)

    def forward(self, features, boxes):
        """features: {level: [B, C, H, W]}; boxes: list[Boxes] (B, in the student's input
        pixels) -> {level: [N, D]}, N the total number of boxes."""
        return {
            level: self.adapters[level](self.pool(level, features[level], boxes)).flatten(1)
            for level in self.levels
        }
