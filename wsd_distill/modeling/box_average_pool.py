"""Exact RoI average pooling: the mean of a feature map over each bin of each box."""

import torch
from torch import nn


def _bin_weights(start, end, resolution, length):
    """Averaging weights of ``resolution`` equal bins of ``[start, end]`` (in cells) over the
    ``length`` cells of one axis: [N, P, L], row p holding the fraction of bin p in each cell,
    divided by the bin's length (so each row sums to 1 inside the map)."""
    start, end = start.clamp(0, length), end.clamp(0, length)
    end = torch.maximum(end, start + 1e-3)  # a box thinner than that reads the cell it is in
    step = (end - start) / resolution  # [N]
    offsets = torch.arange(resolution, device=start.device, dtype=start.dtype)
    lo = start[:, None] + offsets * step[:, None]  # [N, P]
    hi = lo + step[:, None]
    cells = torch.arange(length, device=start.device, dtype=start.dtype)
    overlap = (torch.minimum(hi[..., None], cells + 1) - torch.maximum(lo[..., None], cells)).clamp(
        min=0
    )
    return overlap / step[:, None, None]


def box_average_pool(feature, boxes, scale, resolution=1):
    """Average of ``feature`` over each of ``resolution`` x ``resolution`` bins of each box,
    reading the map as constant over each of its cells, so fractional boxes are exact: the
    whole-image box on a map whose sides are multiples of the resolution gives exactly
    ``adaptive_avg_pool2d``. Each bin's average is a weighted sum of the map's cells (row
    weights x column weights), so all boxes of an image are one matrix product with the map,
    forward and backward, whatever the box sizes.

    Args:
        feature: [B, C, H, W].
        boxes (list[Boxes]): per image, XYXY boxes in input pixels.
        scale (float): feature cells per input pixel (1 / stride).
        resolution (int): P, bins per side.
    Returns:
        [N, C, P, P], N the total number of boxes.
    """
    (batch, channels, height, width), p = feature.shape, resolution
    counts = [len(b) for b in boxes]
    n, most = sum(counts), max(counts, default=0)
    if n == 0:
        return feature.new_zeros(0, channels, p, p)
    device = feature.device
    # weights in at least float32 (box coordinates in fp16 would be off by up to a pixel)
    dtype = torch.promote_types(feature.dtype, torch.float32)
    x1, y1, x2, y2 = (torch.cat([b.tensor for b in boxes]).to(device, dtype) * scale).unbind(1)
    rows, cols = _bin_weights(y1, y2, p, height), _bin_weights(x1, x2, p, width)
    weights = rows[:, :, None, :, None] * cols[:, None, :, None, :]  # [N, P, P, H, W]
    # the images' boxes side by side, padded to the most boxes: [B, most P P, H W] @ [B, H W, C]
    image = torch.repeat_interleave(
        torch.arange(batch, device=device), torch.tensor(counts, device=device)
    )
    slot = torch.cat([torch.arange(c, device=device) for c in counts])  # box within its image
    padded = feature.new_zeros(batch, most, p * p, height * width)
    padded[image, slot] = weights.reshape(n, p * p, height * width).to(feature.dtype)
    pooled = torch.bmm(padded.view(batch, most * p * p, -1), feature.flatten(2).transpose(1, 2))
    pooled = pooled.view(batch, most, p, p, channels)[image, slot]  # [N, P, P, C]
    return pooled.permute(0, 3, 1, 2)


class BoxAveragePooler(nn.Module):
    """detectron2's ``ROIPooler`` interface, one level, on :func:`box_average_pool`
    (``MODEL.ROI_BOX_HEAD.POOLER_TYPE`` "BoxAverage"): ([feature [B, C, H, W]], list[Boxes]) ->
    [N, C, P, P]."""

    def __init__(self, output_size, scale):
        super().__init__()
        self.output_size, self.scale = output_size, scale

    def forward(self, features, boxes):
        return box_average_pool(features[0], boxes, self.scale, self.output_size)
