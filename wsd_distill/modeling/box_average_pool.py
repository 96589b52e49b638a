"""Exact RoI average pooling: the mean of a feature map over each bin of each box."""

import torch


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
    ``adaptive_avg_pool2d``. The average is separable (row weights x column weights), so it
    is two matrix products per image, forward and backward, whatever the box sizes.

    Args:
        feature: [B, C, H, W].
        boxes (list[Boxes]): per image, XYXY boxes in input pixels.
        scale (float): feature cells per input pixel (1 / stride).
        resolution (int): P, bins per side.
    Returns:
        [N, C, P, P], N the total number of boxes.
    """
    channels, height, width = feature.shape[1:]
    pooled = []
    for x, b in zip(feature, boxes):
        x1, y1, x2, y2 = (b.tensor.to(x.dtype) * scale).unbind(1)
        rows = _bin_weights(y1, y2, resolution, height)  # [N, P, H]
        cols = _bin_weights(x1, x2, resolution, width)  # [N, P, W]
        n = len(rows)
        # [N P, H] @ [H, C W] -> [N, P, C, W]; then, per box, [P C, W] @ [W, P] -> [N, P, C, P]
        by_rows = (
            rows.reshape(n * resolution, height) @ x.transpose(0, 1).reshape(height, -1)
        ).view(n, resolution * channels, width)
        both = torch.bmm(by_rows, cols.transpose(1, 2)).view(n, resolution, channels, resolution)
        pooled.append(both.transpose(1, 2))
    return torch.cat(pooled) if pooled else feature.new_zeros(0, channels, resolution, resolution)
