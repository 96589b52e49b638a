"""Proposals from any detectron2 model: an RPN's proposals or a detector's boxes (the paper's
Table 5 replaces EdgeBoxes by a detector's boxes)."""

from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor

from .postprocess import postprocess_proposals


class Detectron2Proposer:
    """Boxes of a detectron2 model on an image, through detectron2's ``DefaultPredictor``: a
    ``ProposalNetwork`` gives its RPN's proposals, scored by ``sigmoid(objectness)``; a detector
    (``GeneralizedRCNN``) its detections of any class, scored by their class score.

    Args:
        config_file (str): its detectron2 config, e.g. model zoo's
            ``COCO-Detection/rpn_R_50_FPN_1x.yaml`` or ``faster_rcnn_R_50_FPN_3x.yaml``.
        weights (str): its checkpoint (a path or a URL detectron2 opens; "" keeps the random
            initial weights, for tests only).
        max_proposals (int): boxes kept per image; the model is set to give at least as many
            (``MODEL.RPN.POST_NMS_TOPK_TEST``, ``TEST.DETECTIONS_PER_IMAGE``).
        min_size (float): boxes thinner than this, in pixels, are dropped.
        device (str): where the model runs.
        opts (list): further config overrides, ``[key, value, ...]``.
    """

    def __init__(
        self, config_file, weights="", max_proposals=500, min_size=4.0, device="cpu", opts=()
    ):
        cfg = get_cfg()
        cfg.merge_from_file(config_file, allow_unsafe=False)  # (plain YAML only)
        cfg.merge_from_list(list(opts))
        cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = weights, device
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = max(cfg.MODEL.RPN.POST_NMS_TOPK_TEST, max_proposals)
        cfg.TEST.DETECTIONS_PER_IMAGE = max(cfg.TEST.DETECTIONS_PER_IMAGE, max_proposals)
        self.predictor = DefaultPredictor(cfg)
        self.max_proposals, self.min_size = max_proposals, min_size

    def __call__(self, image):
        """BGR uint8 [H, W, 3] -> (boxes float32 [N, 4] XYXY in pixels, scores float32 [N])."""
        output = self.predictor(image)
        if "proposals" in output:
            boxes = output["proposals"].proposal_boxes.tensor
            scores = output["proposals"].objectness_logits.sigmoid()
        else:
            boxes, scores = output["instances"].pred_boxes.tensor, output["instances"].scores
        height, width = image.shape[:2]
        return postprocess_proposals(
            boxes.cpu().numpy(),
            scores.cpu().numpy(),
            height,
            width,
            self.max_proposals,
            self.min_size,
        )
