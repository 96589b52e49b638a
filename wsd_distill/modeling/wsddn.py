"""WSDDN (Bilen & Vedaldi, CVPR 2016): the weakly-supervised teacher T-WDet."""

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_proposal_generator
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.roi_heads.box_head import build_box_head
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from torch import nn
from torch.nn import functional as F

from .box_average_pool import BoxAveragePooler
from .box_head import TimmC4BoxHead
from .class_count import add_class_count_check, check_dataset_class_count


def softmax_over_regions(logits, num_regions):
    """Softmax of [R, K] logits over the regions of each image (not over the batch)."""
    return cat([F.softmax(x, dim=0) for x in logits.split(num_regions)], dim=0)


def wsddn_scores(cls_logits, det_logits, num_regions, eps):
    """Region scores S = softmax_c(Mc) * softmax_r(Md), [R, K], and image scores
    y_k = sum_r S_rk clamped into (eps, 1 - eps), [B, K]."""
    region_scores = F.softmax(cls_logits, dim=1) * softmax_over_regions(det_logits, num_regions)
    image_scores = torch.stack([s.sum(dim=0) for s in region_scores.split(num_regions)])
    return region_scores, image_scores.clamp(eps, 1 - eps)


def wsddn_log_image_scores(cls_logits, det_logits, num_regions):
    """``(log y, log(1 - y))`` [B, K] of the unclamped image scores y_k = sum_r S_rk, computed in
    log space (float32 y of confident images is 1.0 exactly, and clamped all alike): with
    w = softmax_r(Md) and p = softmax_c(Mc), log y_k = logsumexp_r(log w_rk + log p_rk) and,
    as sum_r w_rk = 1, log(1 - y_k) = logsumexp_r(log w_rk + log sum_{c != k} p_rc)."""
    log_p = F.log_softmax(cls_logits.float(), dim=1)  # [R, K]
    k = log_p.shape[1]
    others = log_p[:, None, :].expand(-1, k, -1).masked_fill(torch.eye(k, dtype=torch.bool,
        device=log_p.device), float("-inf"))  # fmt: skip
    log_not_p = torch.logsumexp(others, dim=2)  # [R, K]: log(1 - p_rk)
    log_y, log_not_y = [], []
    for det, lp, lnp in zip(
        det_logits.float().split(num_regions),
        log_p.split(num_regions),
        log_not_p.split(num_regions),
    ):
        log_w = F.log_softmax(det, dim=0)
        log_y.append(torch.logsumexp(log_w + lp, dim=0))
        log_not_y.append(torch.logsumexp(log_w + lnp, dim=0))
    return torch.stack(log_y), torch.stack(log_not_y)


def pairwise_iou_plus_one(boxes1, boxes2):
    """IoU [N, M] of two Boxes with widths and heights + 1 pixel, as pcl.pytorch's
    ``bbox_overlaps`` (the Fast R-CNN convention of inclusive integer coordinates)."""
    a, b = boxes1.tensor, boxes2.tensor
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    low, high = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low + 1).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def region_objectness(region_scores):
    """Objectness of each region from WSDDN region scores S [R, K]: ``max_k S_rk``, the
    region's largest contribution to any class score. [R]"""
    return region_scores.max(dim=1).values


def top_regions(objectness, num_regions, topk):
    """Indices of each image's ``topk`` regions by ``objectness`` [R] (all of them for ``topk``
    0): list of [min(topk, R_i)] tensors indexing that image's rows of the R regions."""
    if not topk:
        return [torch.arange(n, device=objectness.device) for n in num_regions]
    return [o.topk(min(topk, len(o))).indices for o in objectness.split(num_regions)]


def class_top_regions(boxes, region_scores, image_size):
    """Each class's best region over all proposals (before threshold and NMS), as pcl.pytorch's
    CorLoc takes it: Instances of K rows (``pred_boxes`` clipped to ``image_size``, ``scores``,
    ``pred_classes`` = 0..K-1). boxes: Boxes [R]; region_scores [R, K]."""
    scores, regions = region_scores.max(dim=0)
    instances = Instances(image_size)
    instances.pred_boxes = boxes[regions].clone()
    instances.pred_boxes.clip(image_size)
    instances.scores = scores
    instances.pred_classes = torch.arange(len(scores), device=scores.device)
    return instances


def rescale_boxes(instances, height, width, field="pred_boxes"):
    """Instances with boxes (``field``) in the network input's pixels -> the same boxes in an
    output resolution of ``height`` x ``width``, e.g. the original image's (as
    ``detector_postprocess``, keeping every row)."""
    input_height, input_width = instances.image_size
    instances = Instances((height, width), **instances.get_fields())
    boxes = instances.get(field).clone()
    boxes.scale(width / input_width, height / input_height)
    boxes.clip(instances.image_size)
    instances.set(field, boxes)
    return instances


def select_proposals(proposals, max_proposals):
    """Keep each image's ``max_proposals`` best proposals by objectness."""
    kept = []
    for p in proposals:
        if len(p) > max_proposals:
            p = p[p.objectness_logits.topk(max_proposals).indices]
        kept.append(p)
    return kept


@META_ARCH_REGISTRY.register()
class WSDDN(nn.Module):
    """backbone -> RoI pooling of precomputed proposals -> box head -> two streams.

    Input: the ``MultiLabelDatasetMapper`` dicts (``image``, ``proposals``, ``multi_labels``).
    Training returns ``{"loss_wsddn"}`` (+ ``loss_refine_i`` with OICR refinement); inference
    returns per image ``{"image_scores": [K], "image_logits": [K], "instances": Instances,
    "class_top_regions": Instances}``: ``image_logits`` the logits of the unclamped image
    scores (``wsddn_log_image_scores``; what evaluation ranks), ``pred_boxes`` (original image
    pixels), ``scores`` and ``pred_classes`` after per-class NMS, and each class's best region
    before it (CorLoc's box).
    :meth:`teacher_outputs` gives what the student distils from.
    """

    NEW_LAYERS = ("cls_score", "det_score", "refine_scores")  # (SOLVER.NEW_LAYER_LR_FACTOR)

    @configurable
    def __init__(
        self,
        *,
        backbone,
        in_feature,
        pooler,
        box_head,
        head_dim,
        num_classes,
        pixel_mean,
        pixel_std,
        max_proposals=500,
        scale_rois_by_score=False,
        eps=1e-6,
        refine_iters=0,
        refine_iou=0.5,
        refine_bg_iou=0.0,
        refine_iou_plus_one=False,
        refine_first_weight=1.0,
        score_thresh=1e-4,
        nms_thresh=0.4,
        detections_per_image=100,
        proposal_generator=None,
    ):
        """
        Args:
            proposal_generator (nn.Module or None): at inference, images given without
                ``proposals`` get this detectron2 proposal generator's
                (``ImageList`` -> (list[Instances], losses); ``proposal_generator.py``); None:
                they are an error.
        """
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.pooler = pooler
        self.box_head = box_head
        self.cls_score = nn.Linear(head_dim, num_classes)
        self.det_score = nn.Linear(head_dim, num_classes)
        self.refine_scores = nn.ModuleList(
            nn.Linear(head_dim, num_classes + 1) for _ in range(refine_iters)
        )
        for layer in (self.cls_score, self.det_score, *self.refine_scores):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        self.num_classes = num_classes
        self.max_proposals = max_proposals
        self.scale_rois_by_score = scale_rois_by_score
        self.eps = eps
        self.refine_iou = refine_iou
        self.refine_bg_iou = refine_bg_iou
        self.refine_iou_plus_one = refine_iou_plus_one
        self.refine_first_weight = refine_first_weight
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image
        self.proposal_generator = proposal_generator
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        add_class_count_check(self, num_classes, "MODEL.ROI_HEADS.NUM_CLASSES")
        if isinstance(box_head, TimmC4BoxHead):  # ImageNet weights written for the backbone
            self._register_load_state_dict_pre_hook(self._box_head_from_backbone_weights)

    @classmethod
    def from_config(cls, cfg):
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        check_dataset_class_count(cfg, num_classes, "MODEL.ROI_HEADS.NUM_CLASSES")
        backbone = build_backbone(cfg)
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        shapes = backbone.output_shape()
        if len(in_features) != 1 or in_features[0] not in shapes:
            raise KeyError(
                f"MODEL.ROI_HEADS.IN_FEATURES {list(in_features)}: a WSDDN pools its RoIs from "
                f"one backbone output, one of {sorted(shapes)}"
            )
        shape = shapes[in_features[0]]
        b = cfg.MODEL.ROI_BOX_HEAD
        if b.POOLER_TYPE == "BoxAverage":
            pooler = BoxAveragePooler(b.POOLER_RESOLUTION, 1.0 / shape.stride)
        else:
            pooler = ROIPooler(
                output_size=b.POOLER_RESOLUTION,
                scales=(1.0 / shape.stride,),
                sampling_ratio=b.POOLER_SAMPLING_RATIO,
                pooler_type=b.POOLER_TYPE,
            )
        pooled = ShapeSpec(
            channels=shape.channels, height=b.POOLER_RESOLUTION, width=b.POOLER_RESOLUTION
        )
        box_head = build_box_head(cfg, pooled)
        w = cfg.MODEL.WSDDN
        return {
            "backbone": backbone,
            "in_feature": in_features[0],
            "pooler": pooler,
            "box_head": box_head,
            "head_dim": box_head.output_shape.channels,
            "num_classes": num_classes,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "max_proposals": w.MAX_PROPOSALS,
            "scale_rois_by_score": w.SCALE_ROI_BY_PROPOSAL_SCORE,
            "eps": w.SCORE_EPS,
            "refine_iters": w.REFINE_ITERS,
            "refine_iou": w.REFINE_IOU,
            "refine_bg_iou": w.REFINE_BG_IOU,
            "refine_iou_plus_one": w.REFINE_IOU_PLUS_ONE,
            "refine_first_weight": w.REFINE_FIRST_LOSS_WEIGHT,
            "score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "proposal_generator": build_proposal_generator(cfg, shapes),
        }

    def _box_head_from_backbone_weights(self, state_dict, prefix, *args):
        self.box_head.adopt_backbone_weights(state_dict, prefix + "box_head.", prefix + "backbone.")

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs):
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def teacher_outputs(self, batched_inputs) -> dict:
        """Everything the student distils from, for a batch of mapper dicts.

        Returns a dict with ``proposals`` (list[Instances], boxes in the network's input
        pixels, at most ``max_proposals`` per image), ``num_regions`` (list[int]),
        ``roi_features`` [R, D] (each RoI pooled, multiplied by its proposal score with
        ``scale_rois_by_score``, through the box head), ``cls_logits`` [R, K] and
        ``det_logits`` [R, K] (R regions of all images, in order), ``region_scores`` [R, K] and
        ``image_scores`` [B, K].
        """
        images = self.preprocess_image(batched_inputs)
        proposals = self.proposals_of(batched_inputs, images)
        features = self.backbone(images.tensor)[self.in_feature]
        pooled = self.pooler([features], [p.proposal_boxes for p in proposals])  # [R, C, P, P]
        if self.scale_rois_by_score:  # the authors' RoI pooling: score_scale * ebscore * pooled
            pooled = pooled * cat([p.objectness_logits for p in proposals]).view(-1, 1, 1, 1)
        roi_features = self.box_head(pooled)
        num_regions = [len(p) for p in proposals]
        cls_logits, det_logits = self.cls_score(roi_features), self.det_score(roi_features)
        region_scores, image_scores = wsddn_scores(cls_logits, det_logits, num_regions, self.eps)
        return {
            "images": images,
            "proposals": proposals,
            "num_regions": num_regions,
            "roi_features": roi_features,
            "cls_logits": cls_logits,
            "det_logits": det_logits,
            "region_scores": region_scores,
            "image_scores": image_scores,
        }

    def proposals_of(self, batched_inputs, images=None):
        """Each input's ``proposals``, or at inference, where it has none, the
        ``proposal_generator``'s on its image (``images``: the batch of ``preprocess_image``,
        made here when not given and needed); the best ``max_proposals`` of each, in the pixels
        of its ``image`` tensor."""
        given = [x.get("proposals") for x in batched_inputs]
        if None in given:
            if self.training or self.proposal_generator is None:
                where = "MODEL.LOAD_PROPOSALS and DATASETS.PROPOSAL_FILES_*"
                if not self.training:
                    where += ", or MODEL.PROPOSAL_GENERATOR.NAME (e.g. EdgeBoxesProposals)"
                raise KeyError(f"WSDDN needs proposals: set {where}")
            if images is None:
                images = self.preprocess_image(batched_inputs)
            generated = self.proposal_generator(images)[0]
            given = [p if p is not None else g for p, g in zip(given, generated)]
        return select_proposals([p.to(self.device) for p in given], self.max_proposals)

    def forward(self, batched_inputs) -> dict[str, torch.Tensor] | list[dict]:
        """
        Args:
            batched_inputs: a list, batched outputs of :class:`MultiLabelDatasetMapper`. Each
                item is a dict with:

                * image: Tensor [C, H, W] in (BGR) pixel values.
                * proposals: Instances with ``proposal_boxes`` [R, 4] (pixels of ``image``)
                  and ``objectness_logits`` [R] (the proposal scores).
                * multi_labels (training): Tensor [K], 1 for each class present.
                * height, width (inference, optional): the output resolution of the boxes.
        Returns:
            in training, a dict of losses: ``loss_wsddn`` (and ``loss_refine_i`` with OICR
            branches); in inference, a list of dicts ``{"image_scores": [K], "instances":
            Instances}`` with ``pred_boxes``, ``scores``, ``pred_classes``.
        """
        out = self.teacher_outputs(batched_inputs)
        if not self.training:
            return self.inference(batched_inputs, out, self.detection_scores(out))
        refine_probs = self.refine_probs(out)
        labels = torch.stack([x["multi_labels"] for x in batched_inputs]).to(self.device)
        if not torch.isfinite(out["image_scores"]).all():  # (the BCE would fail unclearly)
            raise FloatingPointError(
                "WSDDN's image scores are not finite: training diverged (lower SOLVER.BASE_LR, "
                "or add SOLVER.CLIP_GRADIENTS, and resume from the last checkpoint)"
            )
        # binary cross-entropy summed over classes, averaged over images; on probabilities it
        # is not autocast-safe, so with AMP it runs in float32 outside autocast
        with torch.autocast(self.device.type, enabled=False):
            bce = F.binary_cross_entropy(out["image_scores"].float(), labels, reduction="sum")
        losses = {"loss_wsddn": bce / len(labels)}
        previous = out["region_scores"]
        for i, probs in enumerate(refine_probs):
            loss = self.refine_loss(probs, previous.detach(), out["proposals"], labels)
            losses[f"loss_refine_{i}"] = loss * (self.refine_first_weight if i == 0 else 1.0)
            previous = probs[:, 1:]
        return losses

    def refine_loss(self, probs, previous_scores, proposals, labels):
        """OICR (Tang et al., CVPR 2017), as pcl.pytorch's ``OICR``: each positive class in turn
        takes its top region under the previous branch as a pseudo box (weighted by that
        score), and the region is then taken from the other classes (its row zeroed), so two
        classes never share one. Each region takes the class of the pseudo box it overlaps
        most when IoU >= ``refine_iou``, else background, with that box's weight (0 under IoU
        ``refine_bg_iou``, pcl.pytorch's BG_THRESH); with ``refine_iou_plus_one`` the IoU counts
        widths and heights + 1 pixel, as pcl.pytorch's and wetectron's. Weighted cross-entropy,
        averaged over an image's regions, then over images. probs [R, K+1] (background first);
        previous_scores [R, K]."""
        losses = []
        for p, prob, prev, y in zip(
            proposals,
            probs.split([len(x) for x in proposals]),
            previous_scores.split([len(x) for x in proposals]),
            labels,
        ):
            classes = y.nonzero().flatten()
            if len(classes) == 0:
                continue
            prev = prev.clone()
            top, top_scores = [], []
            for k in classes:
                region = prev[:, k].argmax()
                top.append(region)
                top_scores.append(prev[region, k].clone())  # (a view: the row is zeroed next)
                prev[region] = 0
            top_boxes = p.proposal_boxes[torch.stack(top)]
            iou = (pairwise_iou_plus_one if self.refine_iou_plus_one else pairwise_iou)(
                p.proposal_boxes, top_boxes
            )  # [R, C]
            best_iou, best = iou.max(dim=1)
            target = torch.where(
                best_iou >= self.refine_iou, classes[best] + 1, torch.zeros_like(best)
            )
            weight = torch.stack(top_scores)[best] * (best_iou >= self.refine_bg_iou)
            log_prob = prob.gather(1, target[:, None]).squeeze(1).clamp_min(self.eps).log()
            losses.append(-(weight * log_prob).mean())
        return torch.stack(losses).mean() if losses else probs.sum() * 0

    def refine_probs(self, out):
        """The OICR branches' class probabilities [R, K+1] (background first), each branch."""
        return [F.softmax(layer(out["roi_features"]), dim=1) for layer in self.refine_scores]

    def detection_scores(self, out):
        """[R, K]: the refined branches' mean when there are any (as OICR), else S."""
        refine_probs = self.refine_probs(out)
        if not refine_probs:
            return out["region_scores"]
        return torch.stack([p[:, 1:] for p in refine_probs]).mean(0)

    def inference(self, batched_inputs, out, scores):
        """Outputs of ``teacher_outputs`` and the detection scores [R, K] -> the results of
        ``forward`` in inference."""
        results = []
        image_logits = out.get("image_logits")
        if image_logits is None:
            log_y, log_not_y = wsddn_log_image_scores(
                out["cls_logits"], out["det_logits"], out["num_regions"]
            )
            image_logits = log_y - log_not_y
        for x, proposals, image_size, region_scores, image_scores, logits in zip(
            batched_inputs,
            out["proposals"],
            out["images"].image_sizes,
            scores.split(out["num_regions"]),
            out["image_scores"],
            image_logits,
        ):
            instances = self.detect(proposals.proposal_boxes, region_scores, image_size)
            top_regions = class_top_regions(proposals.proposal_boxes, region_scores, image_size)
            height, width = x.get("height", image_size[0]), x.get("width", image_size[1])
            results.append(
                {
                    "image_scores": image_scores,
                    "image_logits": logits,
                    "instances": detector_postprocess(instances, height, width),
                    "class_top_regions": rescale_boxes(top_regions, height, width),
                }
            )
        return results

    def detect(self, boxes, region_scores, image_size):
        """Per-class NMS of region scores [R, K] -> Instances (input-image pixels)."""
        boxes = boxes.clone()
        boxes.clip(image_size)
        region_ids, classes = (region_scores > self.score_thresh).nonzero(as_tuple=True)
        scores = region_scores[region_ids, classes]
        keep = batched_nms(boxes.tensor[region_ids], scores, classes, self.nms_thresh)[
            : self.detections_per_image
        ]
        instances = Instances(image_size)
        instances.pred_boxes = Boxes(boxes.tensor[region_ids[keep]])
        instances.scores = scores[keep]
        instances.pred_classes = classes[keep]
        return instances
