"""S-Cls: the plain multi-label classifier, trained with labels and, optionally, a teacher."""

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList
from torch import nn
from torch.nn import functional as F

from ..config import distill_roi_topk, get_teacher_cfg
from .box_head import wsddn_box_head_dim
from .class_count import add_class_count_check
from .distill_losses import prediction_distill_loss, roi_feature_distill_loss, wsddn_soft_scores
from .roi_feature_adapter import RoIFeatureAdapter
from .wsddn import top_regions


def global_pool(x, pooling):
    """[B, C, H, W] -> [B, C] ("avg", "max") or [B, 2C] ("avgmax")."""
    if pooling == "avg":
        return x.mean(dim=(2, 3))
    if pooling == "max":
        return x.amax(dim=(2, 3))
    if pooling == "avgmax":
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
    raise ValueError(f"MODEL.STUDENT.POOLING must be 'avg', 'max' or 'avgmax', got {pooling!r}")


@META_ARCH_REGISTRY.register()
class StudentClassifier(nn.Module):
    """backbone -> global pooling -> linear K (-> sigmoid at inference).

    Input: the ``MultiLabelDatasetMapper`` dicts; each image is resized to ``input_size`` squared
    (the teacher and the student share one data loader). Inference returns per image
    ``{"image_scores": [K]}`` and nothing else. Training returns ``loss_cls`` and, when built
    with ``distill`` on, ``loss_kd_pred`` (Eq. 10) and ``loss_kd_feat`` (Eq. 3) from the
    ``"teacher"`` entry the :class:`TeacherHook` adds to every training dict: the teacher's
    ``proposal_boxes`` [R_i, 4] (pixels of ``image``), ``roi_features`` [R_i, D],
    ``cls_logits`` and ``det_logits`` [R_i, K]; or, read from a teacher cache by the mapper
    (tensors or NumPy arrays), what the losses in use need: ``soft_scores`` [K] (p'_T) for
    L_p', the ``proposal_boxes`` and ``roi_features`` of the RoIs kept for L_f.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        in_feature,
        num_classes,
        pixel_mean,
        pixel_std,
        pooling="avg",
        input_size=224,
        distill=False,
        feature_adapter=None,
        label_weight=1.0,
        prediction_weight=1.0,
        feature_weight=1.0,
        temperature=5.0,
        teacher_cls_temperature=0.5,
        teacher_det_temperature=0.5,
        roi_topk=0,
    ):
        """``feature_adapter`` (RoIFeatureAdapter or None) is needed when ``feature_weight > 0``;
        ``roi_topk`` > 0 keeps each image's top-k teacher RoIs (by objectness) for L_f, 0 all."""
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.pooling = pooling
        channels = backbone.output_shape()[in_feature].channels * (2 if pooling == "avgmax" else 1)
        self.classifier = nn.Linear(channels, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.input_size = input_size
        self.distill = distill
        self.feature_adapter = feature_adapter if distill and feature_weight > 0 else None
        if distill and feature_weight > 0 and feature_adapter is None:
            raise ValueError("feature distillation (feature_weight > 0) needs a feature_adapter")
        self.label_weight = label_weight
        self.prediction_weight = prediction_weight if distill else 0.0
        self.feature_weight = feature_weight if distill else 0.0
        self.temperature = temperature
        self.teacher_temperatures = (teacher_cls_temperature, teacher_det_temperature)
        self.roi_topk = roi_topk
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        add_class_count_check(self, num_classes, "MODEL.STUDENT.NUM_CLASSES")

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        s, d = cfg.MODEL.STUDENT, cfg.MODEL.DISTILL
        if s.IN_FEATURE not in backbone.output_shape():
            raise KeyError(
                f"MODEL.STUDENT.IN_FEATURE '{s.IN_FEATURE}' is not a backbone output ({sorted(backbone.output_shape())})"
            )
        adapter = None
        if d.ENABLED and d.FEATURE_WEIGHT > 0:
            adapter = RoIFeatureAdapter(
                backbone.output_shape(),
                d.FEATURE_LEVELS,
                wsddn_box_head_dim(get_teacher_cfg(cfg)),
                d.POOLER_RESOLUTION,
                d.POOLER_SAMPLING_RATIO,
                d.POOLER_TYPE,
            )
        return {
            "backbone": backbone,
            "in_feature": s.IN_FEATURE,
            "num_classes": s.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "pooling": s.POOLING,
            "input_size": s.INPUT_SIZE,
            "distill": d.ENABLED,
            "feature_adapter": adapter,
            "label_weight": d.LABEL_WEIGHT,
            "prediction_weight": d.PREDICTION_WEIGHT,
            "feature_weight": d.FEATURE_WEIGHT,
            "temperature": d.TEMPERATURE,
            "teacher_cls_temperature": d.TEACHER_CLS_TEMPERATURE,
            "teacher_det_temperature": d.TEACHER_DET_TEMPERATURE,
            "roi_topk": distill_roi_topk(cfg),
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs):
        """Normalize and resize each image to ``input_size`` squared -> (ImageList, scales [B, 2]
        as (x, y) factors from ``image`` pixels to the network's input pixels)."""
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        if not self.input_size:
            return ImageList.from_tensors(images, self.backbone.size_divisibility), torch.ones(
                len(images), 2
            )
        size = (self.input_size, self.input_size)
        scales = torch.tensor([[size[1] / x.shape[2], size[0] / x.shape[1]] for x in images])
        resized = [
            F.interpolate(x[None], size, mode="bilinear", align_corners=False, antialias=True)[0]
            for x in images
        ]
        return ImageList(torch.stack(resized), [size] * len(images)), scales

    def forward(self, batched_inputs):
        images, scales = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        logits = self.classifier(global_pool(features[self.in_feature], self.pooling))  # [B, K]
        if not self.training:
            return [{"image_scores": s} for s in torch.sigmoid(logits)]
        labels = torch.stack([x["multi_labels"] for x in batched_inputs]).to(self.device)
        losses = {
            "loss_cls": self.label_weight
            * F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
            / len(labels)
        }
        if self.distill:
            losses.update(self.distill_losses(batched_inputs, features, logits, scales))
        return losses

    def distill_losses(self, batched_inputs, features, logits, scales):
        if any("teacher" not in x for x in batched_inputs):
            raise KeyError(
                "MODEL.DISTILL.ENABLED is on but the training inputs carry no 'teacher' outputs: "
                "register wsd_distill.engine.TeacherHook with the trainer (wsd_distill's Trainer does)"
            )
        teacher = [
            {k: torch.as_tensor(v, device=self.device) for k, v in x["teacher"].items()}
            for x in batched_inputs
        ]
        if (
            "cls_logits" not in teacher[0]
        ):  # from a teacher cache: p'_T and/or the RoIs for L_f, selected already
            soft = (
                torch.stack([t["soft_scores"] for t in teacher])
                if self.prediction_weight > 0
                else None
            )
            keep = (
                [torch.arange(len(t["proposal_boxes"]), device=self.device) for t in teacher]
                if self.feature_weight > 0
                else None
            )
        else:
            num_regions = [len(t["cls_logits"]) for t in teacher]
            cls_logits = torch.cat([t["cls_logits"] for t in teacher])
            det_logits = torch.cat([t["det_logits"] for t in teacher])
            soft = wsddn_soft_scores(
                cls_logits, det_logits, num_regions, *self.teacher_temperatures
            )
            keep = (
                top_regions(cls_logits, det_logits, num_regions, self.roi_topk)
                if self.feature_weight > 0
                else None
            )
        losses = {}
        if self.prediction_weight > 0:
            losses["loss_kd_pred"] = self.prediction_weight * prediction_distill_loss(
                logits, soft, self.temperature
            )
        if self.feature_weight > 0:
            boxes = [
                Boxes(t["proposal_boxes"][k] * scale.to(self.device).repeat(2))
                for t, k, scale in zip(teacher, keep, scales)
            ]
            target = torch.cat([t["roi_features"][k] for t, k in zip(teacher, keep)])
            student = self.feature_adapter(features, boxes)
            loss = sum(roi_feature_distill_loss(f, target) for f in student.values()) / len(student)
            losses["loss_kd_feat"] = self.feature_weight * loss
        return losses
