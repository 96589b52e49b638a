"""WSDDN with test-time augmentation (``TEST.AUG``), as the WSOD codebases evaluate (pcl.pytorch,
wetectron): every image at several scales and flipped, the same proposals in each, the scores
averaged over the variants (beyond the paper), for the teacher's evaluation."""

import math

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from .wsddn import wsddn_log_image_scores


def tta_transforms(cfg, image_shape):
    """The variants of ``TEST.AUG`` for an image (H, W) as the test loader gives it: one per
    size of ``MIN_SIZES`` (resized as ``INPUT.RESIZE`` says: the shortest side to the size, the
    longer at most ``TEST.AUG.MAX_SIZE``, or warped to a square) and, with ``FLIP``, each
    flipped too. Returns a list of detectron2 transforms."""
    transforms = []
    for size in cfg.TEST.AUG.MIN_SIZES:
        if cfg.INPUT.RESIZE == "square":
            resize = T.Resize((size, size))
        else:
            resize = T.ResizeShortestEdge(size, cfg.TEST.AUG.MAX_SIZE)
        tfm = resize.get_transform(np.zeros((*image_shape, 1), np.uint8))
        transforms.append(T.TransformList([tfm]))
        if cfg.TEST.AUG.FLIP:
            transforms.append(T.TransformList([tfm, T.HFlipTransform(tfm.new_w)]))
    return transforms


def tta_variants(cfg, x, proposals):
    """The :func:`tta_transforms` variants of an input dict ``x`` whose (selected) proposals are
    the Instances ``proposals``: a list of ``{"image", "proposals"}`` dicts, the same proposals
    in the same order in each, their boxes transformed with the image."""
    image = x["image"].permute(1, 2, 0).cpu().numpy()
    boxes = proposals.proposal_boxes.tensor.cpu().numpy()
    variants = []
    for tfm in tta_transforms(cfg, image.shape[:2]):
        variant = tfm.apply_image(image)
        p = Instances(variant.shape[:2])
        p.proposal_boxes = Boxes(torch.as_tensor(tfm.apply_box(boxes), dtype=torch.float32))
        p.objectness_logits = proposals.objectness_logits.cpu()
        tensor = torch.as_tensor(np.ascontiguousarray(variant.transpose(2, 0, 1)))
        variants.append({"image": tensor, "proposals": p})
    return variants


def tta_teacher_outputs(cfg, model, batched_inputs):
    """Run a WSDDN ``model`` on the ``TEST.AUG`` variants of a batch of input dicts.

    Returns ``(proposals, outputs)``: each input's proposals as the model selects them
    (list[Instances], in the pixels of its ``image``), and a generator of
    ``model.teacher_outputs`` for each variant of the whole batch, in the order of
    :func:`tta_transforms`, whose regions are those proposals in the same order."""
    proposals = model.proposals_of(batched_inputs)
    variants = [tta_variants(cfg, x, p) for x, p in zip(batched_inputs, proposals)]
    outputs = (model.teacher_outputs(list(batch)) for batch in zip(*variants))
    return proposals, outputs


class WSDDNWithTTA(nn.Module):
    """Wraps a trained :class:`WSDDN` for inference: ``forward`` gives what WSDDN's gives
    (``image_scores``, ``instances``, ``class_top_regions``), from the mean over the
    :func:`tta_transforms` variants of its image scores [K] and its detection scores [R, K]
    (the refined branches' mean with OICR), on the proposals of the unaugmented input."""

    def __init__(self, cfg, model):
        super().__init__()
        self.cfg = cfg.clone()
        self.model = model

    def forward(self, batched_inputs):
        return [self.one_image(x) for x in batched_inputs]

    @torch.no_grad()
    def one_image(self, x):
        model = self.model
        proposals, outputs = tta_teacher_outputs(self.cfg, model, [x])
        image_scores, log_scores, detection_scores = [], [], []
        for out in outputs:
            image_scores.append(out["image_scores"])
            log_scores.append(
                torch.stack(
                    wsddn_log_image_scores(out["cls_logits"], out["det_logits"], out["num_regions"])
                )
            )
            detection_scores.append(model.detection_scores(out))
        # the mean of the unclamped y and of 1 - y over the variants, in log space: [2, 1, K]
        log_mean = torch.logsumexp(torch.stack(log_scores), dim=0) - math.log(len(log_scores))
        averaged = {
            "proposals": proposals,
            "images": ImageList(x["image"][None], [tuple(x["image"].shape[1:])]),
            "num_regions": [len(proposals[0])],
            "image_scores": torch.stack(image_scores).mean(0),
            "image_logits": log_mean[0] - log_mean[1],
        }
        return model.inference([x], averaged, torch.stack(detection_scores).mean(0))[0]
