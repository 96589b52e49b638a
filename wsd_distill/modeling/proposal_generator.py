"""A WSDDN's proposals for images given without them (``DefaultPredictor``, ``tools/predict.py``):
EdgeBoxes, selective search or a detectron2 model's boxes, as detectron2 proposal generators
(``PROPOSAL_GENERATOR_REGISTRY``, chosen by ``MODEL.PROPOSAL_GENERATOR.NAME``;
"PrecomputedProposals", detectron2's name for none, reads each input's ``proposals``)."""

import numpy as np
import torch
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.structures import Boxes, Instances
from torch import nn

from ..box_proposers import build_box_proposer


class ImageProposalGenerator(nn.Module):
    """A box proposer of images (``wsd_distill.box_proposers``, by its ``method`` name) in
    detectron2's proposal-generator interface: each image of the batch, back in its pixels
    (``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` undone, ``INPUT.FORMAT`` made BGR), gets at most
    ``MODEL.WSDDN.MAX_PROPOSALS`` boxes, their scores as ``objectness_logits``. It learns
    nothing: no loss, the feature maps unread."""

    method = ""

    def __init__(self, cfg, input_shape=None):
        super().__init__()
        settings = {"max_proposals": cfg.MODEL.WSDDN.MAX_PROPOSALS, **self.settings(cfg)}
        self.proposer = build_box_proposer(self.method, **settings)
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)
        self.rgb = cfg.INPUT.FORMAT == "RGB"

    def settings(self, cfg):
        """The proposer's keyword arguments besides ``max_proposals``."""
        return {}

    def forward(self, images, features=None, gt_instances=None):
        """
        Args:
            images (ImageList): normalized images [B, C, H, W] and their sizes.
        Returns:
            list[Instances] (``proposal_boxes`` [N, 4] in the pixels of each image,
            ``objectness_logits`` [N]), and no losses ({}).
        """
        proposals = []
        for tensor, (height, width) in zip(images.tensor, images.image_sizes):
            pixels = tensor[:, :height, :width] * self.pixel_std + self.pixel_mean
            image = pixels.round().clamp(0, 255).permute(1, 2, 0).byte().cpu().numpy()
            boxes, scores = self.proposer(
                np.ascontiguousarray(image[:, :, ::-1] if self.rgb else image)
            )
            found = Instances((height, width))
            found.proposal_boxes = Boxes(torch.as_tensor(boxes, device=tensor.device))
            found.objectness_logits = torch.as_tensor(scores, device=tensor.device)
            proposals.append(found)
        return proposals, {}


@PROPOSAL_GENERATOR_REGISTRY.register()
class EdgeBoxesProposals(ImageProposalGenerator):
    """EdgeBoxes, on ``MODEL.WSDDN.SED_MODEL``'s structured edges when set (as the paper)."""

    method = "edge_boxes"

    def settings(self, cfg):
        return {"sed_model": cfg.MODEL.WSDDN.SED_MODEL} if cfg.MODEL.WSDDN.SED_MODEL else {}


@PROPOSAL_GENERATOR_REGISTRY.register()
class SelectiveSearchProposals(ImageProposalGenerator):
    """Selective search (OpenCV's, "fast" mode)."""

    method = "selective_search"


@PROPOSAL_GENERATOR_REGISTRY.register()
class Detectron2Proposals(ImageProposalGenerator):
    """The boxes of a trained detectron2 RPN or detector (``MODEL.WSDDN.DETECTRON2_PROPOSER``'s
    config file and weights), run on ``MODEL.DEVICE``."""

    method = "detectron2"

    def settings(self, cfg):
        d2 = cfg.MODEL.WSDDN.DETECTRON2_PROPOSER
        return {"config_file": d2.CONFIG_FILE, "weights": d2.WEIGHTS, "device": cfg.MODEL.DEVICE}
