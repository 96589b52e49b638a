"""TeacherHook: the frozen teacher's outputs on every training batch of the student."""

import os
import time

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.engine import HookBase
from detectron2.modeling import build_model

from ..config import get_teacher_cfg


def build_teacher(cfg):
    """The teacher of ``MODEL.DISTILL``: a WSDDN with its weights loaded, in eval mode, frozen,
    on ``MODEL.DEVICE``. Fails clearly when its weights or classes do not fit the student."""
    teacher_cfg = get_teacher_cfg(cfg)
    weights = teacher_cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "MODEL.DISTILL.TEACHER_WEIGHTS is empty: name the trained teacher's checkpoint"
        )
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.DISTILL.TEACHER_WEIGHTS: no such file '{weights}' (train the teacher first)"
        )
    if teacher_cfg.MODEL.WSDDN.NUM_CLASSES != cfg.MODEL.STUDENT.NUM_CLASSES:
        raise ValueError(
            f"The teacher ({cfg.MODEL.DISTILL.TEACHER_CONFIG}) has MODEL.WSDDN.NUM_CLASSES "
            f"{teacher_cfg.MODEL.WSDDN.NUM_CLASSES} but the student has MODEL.STUDENT.NUM_CLASSES {cfg.MODEL.STUDENT.NUM_CLASSES}"
        )
    teacher_classes = [
        MetadataCatalog.get(n).get("thing_classes") for n in teacher_cfg.DATASETS.TRAIN
    ]
    for name in cfg.DATASETS.TRAIN:
        classes = MetadataCatalog.get(name).get("thing_classes")
        for teacher_name, other in zip(teacher_cfg.DATASETS.TRAIN, teacher_classes):
            if classes is not None and other is not None and list(classes) != list(other):
                raise ValueError(
                    f"The teacher was trained on '{teacher_name}' whose classes {list(other)} differ from "
                    f"the student's dataset '{name}' ({list(classes)})"
                )
    if not cfg.MODEL.LOAD_PROPOSALS:
        raise ValueError(
            "The teacher needs proposals: set MODEL.LOAD_PROPOSALS and DATASETS.PROPOSAL_FILES_TRAIN for the student"
        )
    teacher = build_model(teacher_cfg)
    DetectionCheckpointer(teacher).load(weights)
    return teacher.eval().requires_grad_(False)


class TeacherHook(HookBase):
    """Builds the teacher once before training and, for every training batch, runs it on the
    same (augmented) images and proposals the student gets, adding to each input dict
    ``"teacher": {"proposal_boxes" [R_i, 4], "roi_features" [R_i, D], "cls_logits" [R_i, K],
    "det_logits" [R_i, K]}`` (float32, on the student's device).

    It wraps the trainer's data loader (the place detectron2's ``SimpleTrainer.run_step``
    leaves for it), so it works with ``SimpleTrainer`` and ``AMPTrainer``, each DDP rank
    running its own copy, and with ``--resume``. The teacher's time per batch is logged as
    ``teacher_time`` (it is also part of ``data_time``).
    """

    def __init__(self, cfg=None, teacher=None, fp16=None):
        """Either ``cfg`` (a student config with ``MODEL.DISTILL``) or a built ``teacher``."""
        self.cfg = cfg
        self.teacher = teacher
        self.fp16 = cfg.MODEL.DISTILL.TEACHER_FP16 if fp16 is None else fp16

    def before_train(self):
        if self.teacher is None:
            self.teacher = build_teacher(self.cfg)
        loop = getattr(
            self.trainer, "_trainer", self.trainer
        )  # DefaultTrainer wraps a SimpleTrainer
        loop.data_loader = _WithTeacherOutputs(loop.data_loader, self.annotate)
        loop._data_loader_iter_obj = None

    @torch.no_grad()
    def annotate(self, batched_inputs):
        """Add the teacher's outputs to each dict of a batch (in place); returns the batch."""
        start = time.perf_counter()
        device = self.teacher.device
        autocast = torch.autocast(
            device.type, dtype=torch.float16, enabled=self.fp16 and device.type == "cuda"
        )
        with autocast:
            out = self.teacher.teacher_outputs(batched_inputs)
        splits = [
            out[k].float().split(out["num_regions"])
            for k in ("roi_features", "cls_logits", "det_logits")
        ]
        for x, proposals, features, cls_logits, det_logits in zip(
            batched_inputs, out["proposals"], *splits
        ):
            x["teacher"] = {
                "proposal_boxes": proposals.proposal_boxes.tensor,
                "roi_features": features,
                "cls_logits": cls_logits,
                "det_logits": det_logits,
            }
        if self.trainer is not None:
            self.trainer.storage.put_scalar("teacher_time", time.perf_counter() - start)
        return batched_inputs


class _WithTeacherOutputs:
    """A data loader whose batches pass through ``annotate``."""

    def __init__(self, data_loader, annotate):
        self.data_loader = data_loader
        self.annotate = annotate

    def __iter__(self):
        for batch in self.data_loader:
            yield self.annotate(batch)

    def __len__(self):
        return len(self.data_loader)
