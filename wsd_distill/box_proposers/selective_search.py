"""Selective search (Uijlings et al., IJCV 2013) through ``cv2.ximgproc.segmentation``."""

import ctypes
import zlib

import cv2
import numpy as np

from .postprocess import downscale, postprocess_proposals

_C_LIBRARY = ctypes.CDLL(None)  # the process's C library, whose rand() OpenCV's ranking uses


class SelectiveSearch:
    """Hierarchical grouping of Felzenszwalb superpixels, in OpenCV's "fast" or "quality" mode.

    Selective search gives no box score; its output order (by hierarchy level, randomised
    as in the original, from a seed computed from the image's pixels) is the ranking, and the
    score is ``-log(1 + rank)``.

    Args:
        max_proposals (int): boxes kept per image.
        mode (str): "fast" (2 strategies) or "quality" (more colour spaces and k's; ~5x slower).
        max_side (int or None): images whose longer side exceeds this are downscaled first.
        min_size (float): boxes thinner than this, in original pixels, are dropped.
    """

    def __init__(self, max_proposals=500, mode="fast", max_side=500, min_size=4.0):
        if mode not in ("fast", "quality"):
            raise ValueError(f"selective search mode must be 'fast' or 'quality', got {mode!r}")
        self.max_proposals = max_proposals
        self.mode = mode
        self.max_side = max_side
        self.min_size = min_size

    def __call__(self, image):
        """BGR uint8 [H, W, 3] -> (boxes float32 [N, 4] XYXY in pixels, scores float32 [N])."""
        height, width = image.shape[:2]
        image, scale = downscale(image, self.max_side)
        # OpenCV ranks the regions with the C library's rand(): seeded by the image itself, the
        # same image gets the same boxes in any worker, order or resumed run
        _C_LIBRARY.srand(zlib.crc32(image.tobytes()))
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(image)
        (
            search.switchToSelectiveSearchFast()
            if self.mode == "fast"
            else search.switchToSelectiveSearchQuality()
        )
        boxes = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
        scores = -np.log1p(np.arange(len(boxes), dtype=np.float32))
        return postprocess_proposals(
            boxes / scale, scores, height, width, self.max_proposals, self.min_size
        )
