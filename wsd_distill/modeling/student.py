"""S-Cls: the plain multi-label classifier, trained with labels and, optionally, a teacher."""

import logging

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList
from torch import nn
from torch.nn import functional as F

from .class_count import add_class_count_check, check_dataset_class_count
from .distill_losses import (
    prediction_distill_loss,
    roi_feature_distill_loss,
)
from .label_losses import label_loss
from .student_head import CSRAClassifier, StudentHead

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class StudentClassifier(nn.Module):
    """backbone -> head (:class:`StudentHead`) -> linear K (-> sigmoid at inference).

    With distillation, its losses are those of Liu et al.: ``loss_cls`` (L_p, BCE with the
    labels), ``loss_kd_pred`` (L_p', BCE of ``sigmoid(z / t)`` with the teacher's p'_T) and
    ``loss_kd_feat`` (L_f: the teacher's RoIs, rescaled to the student's input, pooled on the
    student's last feature map and passed through its own head, regress the teacher's RoI
    features). A loss whose weight is 0 is not computed: weights (0, 0, w) are the authors'
    stage 1, whose classifier is frozen (it has no loss); (w, w, 0) their stage 2.

    Beyond the paper, as options: ASL as L_p (``label_loss`` "asl") and the CSRA classifier (a
    head of kind "csra").
    """

    NEW_LAYERS = ("classifier", "feature_projection")  # (SOLVER.NEW_LAYER_LR_FACTOR)

    @configurable
    def __init__(
        self,
        *,
        backbone,
        in_feature,
        head,
        num_classes,
        pixel_mean,
        pixel_std,
        input_size=224,
        label_weight=1.0,
        prediction_weight=0.0,
        feature_weight=0.0,
        temperature=5.0,
        learn_temperature=False,
        prediction_loss="bce",
        teacher_feature_dim=0,
        feature_loss_per_dim=False,
        scale_rois_by_score=False,
        label_loss="bce",
        csra_lambda=0.1,
    ):
        """
        Args:
            head (StudentHead): on ``backbone``'s ``in_feature`` map.
            input_size (int): each image is resized to this square (0: kept as loaded).
            label_weight, prediction_weight, feature_weight (float): weights of L_p, L_p', L_f.
            temperature (float): t of L_p'; ``learn_temperature``: 1 / t is a parameter [K], one
                per class, as the authors' Scale layer.
            prediction_loss (str): L_p', "bce" (Eq. 10) or "softmax"
                (``distill_losses.prediction_distill_loss``).
            teacher_feature_dim (int): D of the teacher's RoI features; where the head's width
                differs, a linear projection maps the student's RoI features to D (for L_f).
            feature_loss_per_dim (bool): L_f divided by D (see ``roi_feature_distill_loss``).
            scale_rois_by_score (bool): the student's pooled RoIs are multiplied by their
                proposal scores, as the authors' RoI pooling.
            label_loss (str): L_p, "bce" or "asl" (``label_losses.label_loss``).
            csra_lambda (float): lambda of the classifier of a "csra" head (the reference's
                default 0.1; no config key).
        """
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.head = head
        if head.kind == "csra":
            self.classifier = CSRAClassifier(head.output_dim, num_classes, csra_lambda)
        else:
            self.classifier = nn.Linear(head.output_dim, num_classes)
            nn.init.normal_(self.classifier.weight, std=0.01)
            nn.init.zeros_(self.classifier.bias)
        self.label_loss = label_loss
        if label_weight == 0 and prediction_weight == 0:
            self.classifier.requires_grad_(False)  # stage 1: no loss reaches it
        self.input_size = input_size
        self.label_weight = label_weight
        self.prediction_weight = prediction_weight
        self.feature_weight = feature_weight
        self.inverse_temperature = 1.0 / temperature
        if learn_temperature and prediction_weight > 0:
            # the authors' Scale layer: one learnt 1 / t per class, from 1 / TEMPERATURE
            self.inverse_temperature = nn.Parameter(torch.full((num_classes,), 1.0 / temperature))
        self.prediction_loss = prediction_loss
        self.feature_loss_per_dim = feature_loss_per_dim
        self.scale_rois_by_score = scale_rois_by_score
        self.feature_projection = None
        if feature_weight > 0 and head.output_dim != teacher_feature_dim:
            logger.info(
                f"L_f: the student's head gives {head.output_dim}-wide RoI features, the "
                f"teacher {teacher_feature_dim}: a linear projection maps one to the other"
            )
            self.feature_projection = nn.Linear(head.output_dim, teacher_feature_dim)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        add_class_count_check(self, num_classes, "MODEL.STUDENT.NUM_CLASSES")

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        s, d = cfg.MODEL.STUDENT, cfg.MODEL.DISTILL
        shapes = backbone.output_shape()
        if s.IN_FEATURE not in shapes:
            raise KeyError(
                f"MODEL.STUDENT.IN_FEATURE '{s.IN_FEATURE}' is not a backbone output "
                f"({sorted(shapes)})"
            )
        check_dataset_class_count(cfg, s.NUM_CLASSES, "MODEL.STUDENT.NUM_CLASSES")
        box_head = cfg.MODEL.ROI_BOX_HEAD  # (the "fc" head's pool5, fc6 and fc7)
        head = StudentHead(
            shapes[s.IN_FEATURE],
            s.HEAD,
            s.POOLING,
            box_head.POOLER_RESOLUTION,
            box_head.FC_DIM,
            box_head.DROPOUT,
        )
        return {
            "backbone": backbone,
            "in_feature": s.IN_FEATURE,
            "head": head,
            "num_classes": s.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_size": s.INPUT_SIZE,
            "label_weight": d.LABEL_WEIGHT if d.ENABLED else 1.0,
            "prediction_weight": d.PREDICTION_WEIGHT if d.ENABLED else 0.0,
            "feature_weight": d.FEATURE_WEIGHT if d.ENABLED else 0.0,
            "temperature": d.TEMPERATURE,
            "learn_temperature": d.LEARN_TEMPERATURE,
            "prediction_loss": d.PREDICTION_LOSS,
            "teacher_feature_dim": d.TEACHER_FEATURE_DIM,
            "feature_loss_per_dim": d.FEATURE_LOSS_PER_DIM,
            "scale_rois_by_score": d.SCALE_ROI_BY_PROPOSAL_SCORE,
            "label_loss": s.LABEL_LOSS,
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
            images = ImageList.from_tensors(images, self.backbone.size_divisibility)
            return images, torch.ones(len(batched_inputs), 2)
        size = (self.input_size, self.input_size)
        scales = torch.tensor([[size[1] / x.shape[2], size[0] / x.shape[1]] for x in images])
        # an image the loader brought to the input size (INPUT.SQUARE_SIZE_TEST) is kept
        resized = torch.cat(
            [x[None] if x.shape[1:] == size else self.resize(x[None]) for x in images]
        )
        return ImageList(resized, [size] * len(images)), scales

    def resize(self, images):
        """Normalized images [B, C, H, W] -> the network's input [B, C, S, S], S = input_size
        (antialiased bilinear)."""
        size = (self.input_size, self.input_size)
        return F.interpolate(images, size, mode="bilinear", align_corners=False, antialias=True)

    def image_logits(self, images):
        """The network's input [B, C, S, S] -> class logits [B, K]."""
        return self.classifier(self.head(self.backbone(images)[self.in_feature]))

    def forward(self, batched_inputs) -> dict[str, torch.Tensor] | list[dict]:
        """
        Args:
            batched_inputs: a list, batched outputs of :class:`MultiLabelDatasetMapper`. Each
                item is a dict with:

                * image: Tensor [C, H, W], resized here to ``input_size`` squared.
                * multi_labels (training): Tensor [K], 1 for each class present.
                * unlabeled (training, optional): True for an image whose labels are hidden
                  (``DATASETS.UNLABELED``): it takes no part in L_p, only in L_p' and L_f.
                * teacher (training with distillation): what the teacher hands the student
                  (``teacher.teacher_targets``; tensors or NumPy arrays): ``soft_scores`` [K]
                  for L_p'; ``proposal_boxes`` [N, 4] (pixels of ``image``),
                  ``proposal_scores`` [N] and ``roi_features`` [N, D] for L_f.
        Returns:
            in training, a dict of the losses in use (``loss_cls``, ``loss_kd_pred``,
            ``loss_kd_feat``); in inference, a list of dicts ``{"image_scores": [K],
            "image_logits": [K]}`` (the evaluation ranks the logits: float32 sigmoids of
            logits above ~17 all equal 1.0).
        """
        images, scales = self.preprocess_image(batched_inputs)
        if not self.training:
            logits = self.image_logits(images.tensor)
            return [{"image_scores": torch.sigmoid(z), "image_logits": z} for z in logits.float()]
        feature = self.backbone(images.tensor)[self.in_feature]
        if self.prediction_weight > 0 or self.feature_weight > 0:
            if any("teacher" not in x for x in batched_inputs):
                raise KeyError(
                    "MODEL.DISTILL.ENABLED is on but the training inputs carry no 'teacher' "
                    "outputs: register wsd_distill.engine.TeacherHook with the trainer "
                    "(wsd_distill's Trainer does), or set MODEL.DISTILL.TEACHER_CACHE"
                )
        losses = {}
        if self.label_weight > 0 or self.prediction_weight > 0:
            logits = self.classifier(self.head(feature))  # [B, K]
        if self.label_weight > 0:  # on the labelled images (DATASETS.UNLABELED's have none)
            labelled = [not x.get("unlabeled", False) for x in batched_inputs]
            labels = torch.stack([x["multi_labels"] for x in batched_inputs]).to(self.device)
            mask = torch.tensor(labelled, device=self.device)  # (averaged over these)
            if any(labelled):
                loss = label_loss(logits[mask], labels[mask], self.label_loss)
            else:  # a batch of unlabeled images: a zero in the graph
                loss = 0 * logits.sum()
            losses["loss_cls"] = self.label_weight * loss
        if self.prediction_weight > 0:
            soft = torch.stack([self._teacher(x, "soft_scores") for x in batched_inputs])
            inverse_t = self.inverse_temperature
            loss = prediction_distill_loss(logits, soft, inverse_t, self.prediction_loss)
            losses["loss_kd_pred"] = self.prediction_weight * loss
        if self.feature_weight > 0:
            loss = self.feature_distill_loss(batched_inputs, feature, scales)
            losses["loss_kd_feat"] = self.feature_weight * loss
        return losses

    def _teacher(self, x, field):
        return torch.as_tensor(x["teacher"][field], device=self.device)

    def roi_features(self, feature, boxes, box_scores=None):
        """The student's features of RoIs: its last map [B, C, H, W] pooled on ``boxes``
        (list[Boxes], the network's input pixels) through its own head (and the projection
        to the teacher's width, if any) -> [N, D]."""
        scores = box_scores if self.scale_rois_by_score else None
        f = self.head.forward_rois(feature, boxes, scores)
        return f if self.feature_projection is None else self.feature_projection(f)

    def feature_distill_loss(self, batched_inputs, feature, scales):
        """L_f (Eq. 3) over all images' teacher RoIs, the boxes rescaled by ``scales`` [B, 2]."""
        boxes = [
            Boxes(self._teacher(x, "proposal_boxes") * scale.to(self.device).repeat(2))
            for x, scale in zip(batched_inputs, scales)
        ]
        box_scores = torch.cat([self._teacher(x, "proposal_scores") for x in batched_inputs])
        target = torch.cat([self._teacher(x, "roi_features") for x in batched_inputs])
        student = self.roi_features(feature, boxes, box_scores)
        return roi_feature_distill_loss(student, target, self.feature_loss_per_dim)
