"""What the image-based proposal generators share: the downscale before, the clean-up after."""

import cv2
import numpy as np


def downscale(image, max_side):
    """``image`` (BGR uint8 [H, W, 3]) resized (area interpolation) so that its longer side is
    at most ``max_side`` (None: never), and the scale applied (1.0: kept as it is); boxes found
    on it map back to the original's pixels divided by that scale."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, 1.0
    scale = max_side / max(height, width)
    size = (round(width * scale), round(height * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def postprocess_proposals(boxes, scores, height, width, max_proposals, min_size):
    """Clip, drop tiny boxes, de-duplicate and keep the best ``max_proposals``.

    Args:
        boxes (ndarray): [N, 4] XYXY boxes in image pixels; scores (ndarray): [N], higher is better.
        min_size (float): boxes narrower or shorter than this (after clipping) are dropped.
    Returns:
        (boxes float32 [M, 4], scores float32 [M]) sorted by decreasing score,
        1 <= M <= max_proposals.
        Boxes that round to the same integer box are kept once (the best scored); when nothing
        is left the whole image is the single proposal, with score 1.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    _, first = np.unique(np.round(boxes).astype(np.int64), axis=0, return_index=True)
    first = np.sort(first)[:max_proposals]
    boxes, scores = boxes[first], scores[first]
    if len(boxes) == 0:
        boxes = np.array([[0, 0, width, height]], dtype=np.float32)
        scores = np.ones(1, dtype=np.float32)
    return boxes, scores
