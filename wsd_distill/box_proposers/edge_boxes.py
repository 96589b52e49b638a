"""EdgeBoxes (Zitnick & Dollar, ECCV 2014) through ``cv2.ximgproc``."""

import cv2
import numpy as np

from .postprocess import downscale, postprocess_proposals


class EdgeBoxes:
    """Score boxes by the edge contours they wholly enclose.

    The edge map comes from the structured-edge forest when ``sed_model`` (the
    ``model.yml.gz`` of opencv_extra's ximgproc samples) is given, with its orientation map
    and edge NMS. Otherwise it is OpenCV's own gradient: the Sobel magnitude of the blurred
    grey image kept only on Canny edges (thin, 1-pixel contours; a dense magnitude map makes
    EdgeBoxes' grouping 40x slower for no gain), orientation ``atan2(gy, gx) mod pi`` as
    the forest's ``computeOrientation`` gives it.

    Args:
        max_proposals (int): boxes kept per image.
        max_side (int or None): images whose longer side exceeds this are downscaled first
            (boxes are mapped back); ``None`` keeps the full resolution. The default, 1333
            (detectron2's largest input side), leaves COCO, VOC and NUS-WIDE images as they are
            and makes a 4000 x 3000 phone photo's proposals 7x faster.
        min_size (float): boxes thinner than this, in original pixels, are dropped.
        min_box_frac (float): smallest box area EdgeBoxes searches, as a fraction of the image
            area (OpenCV's ``minBoxArea`` is 1000 px, too large for small objects in small images).
        alpha, beta: EdgeBoxes' sliding-window step and NMS IoU (0.65 / 0.75 as published).
        canny_thresholds: hysteresis thresholds on the L2 Sobel magnitude (no SED model).
    """

    def __init__(
        self,
        max_proposals=500,
        sed_model=None,
        max_side=1333,
        min_size=4.0,
        min_box_frac=0.001,
        alpha=0.65,
        beta=0.75,
        canny_thresholds=(20, 60),
    ):
        self.max_proposals = max_proposals
        self.max_side = max_side
        self.min_size = min_size
        self.min_box_frac = min_box_frac
        self.canny_thresholds = canny_thresholds
        self.sed = cv2.ximgproc.createStructuredEdgeDetection(sed_model) if sed_model else None
        self.alpha, self.beta = alpha, beta

    def edge_and_orientation(self, image):
        """BGR uint8 [H, W, 3] -> (edges float32 [H, W] in [0, 1], orientation float32 [H, W])."""
        if self.sed is not None:
            edges = self.sed.detectEdges(
                cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
            )
            orientation = self.sed.computeOrientation(edges)
            return self.sed.edgesNms(edges, orientation), orientation
        gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (5, 5), 1.0)
        gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0)
        gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1)
        thin = cv2.Canny(gx, gy, *self.canny_thresholds, L2gradient=True) > 0
        gx, gy = gx.astype(np.float32), gy.astype(np.float32)
        magnitude = (
            np.sqrt(gx * gx + gy * gy) * thin
        )  # not cv2.magnitude: not reproducible once torch is loaded
        edges = magnitude / max(float(magnitude.max()), 1e-6)
        orientation = np.mod(np.arctan2(gy, gx), np.pi).astype(np.float32)
        return edges.astype(np.float32), orientation

    def __call__(self, image):
        """BGR uint8 [H, W, 3] -> (boxes float32 [N, 4] XYXY in pixels, scores float32 [N])."""
        height, width = image.shape[:2]
        image, scale = downscale(image, self.max_side)
        edges, orientation = self.edge_and_orientation(image)
        # A fresh cv2 object per image: a reused one keeps state and answers differently.
        edge_boxes = cv2.ximgproc.createEdgeBoxes(
            alpha=self.alpha,
            beta=self.beta,
            maxBoxes=self.max_proposals,
            minBoxArea=self.min_box_frac * image.shape[0] * image.shape[1],
        )
        boxes, scores = edge_boxes.getBoundingBoxes(edges, orientation)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        return postprocess_proposals(
            boxes / scale, scores, height, width, self.max_proposals, self.min_size
        )
