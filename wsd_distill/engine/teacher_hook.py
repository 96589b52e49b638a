"""TeacherHook: the frozen teacher's targets on every training batch of the student."""

import time

import torch
from detectron2.engine import HookBase

from ..data.teacher_targets import teacher_target_settings
from ..modeling.teacher import build_teacher, teacher_targets


class TeacherHook(HookBase):
    """Builds the teacher once before training and, for every training batch, runs it on the
    same (augmented) images and proposals the student gets, adding to each input dict
    ``"teacher"``: what :func:`~wsd_distill.modeling.teacher.teacher_targets` hands the
    student (p'_T and the RoIs of L_f; float32, on the student's device).

    It wraps the trainer's ``data_loader`` (public on ``SimpleTrainer`` and
    ``DefaultTrainer``; the loader is first iterated in the first step, after every
    ``before_train``), so it works with ``SimpleTrainer`` and ``AMPTrainer``, each DDP rank
    running its own copy, and with ``--resume``. The teacher's time per batch is logged as
    ``teacher_time`` (it is also part of ``data_time``).
    """

    def __init__(self, cfg=None, *, teacher=None, fp16=False, **target_settings):
        """Either ``cfg`` (a student config with ``MODEL.DISTILL``: the teacher, fp16 and the
        target settings come from it), or a built ``teacher`` with ``fp16`` and the keyword
        arguments of ``teacher_targets`` (its defaults: the paper's temperatures, all RoIs)."""
        self.cfg = cfg
        self.teacher = teacher
        if cfg is None:
            self.fp16, self.target_settings = fp16, target_settings
        else:
            self.fp16 = cfg.MODEL.DISTILL.TEACHER_FP16
            self.target_settings = teacher_target_settings(cfg)

    def before_train(self) -> None:
        if self.teacher is None:
            self.teacher = build_teacher(self.cfg)
        self.trainer.data_loader = _WithTeacherTargets(self.trainer.data_loader, self.annotate)

    @torch.no_grad()
    def annotate(self, batched_inputs) -> list[dict]:
        """Add the teacher's targets to each dict of a batch (in place); returns the batch."""
        start = time.perf_counter()
        device = self.teacher.device
        fp16 = self.fp16 and device.type == "cuda"
        with torch.autocast(device.type, dtype=torch.float16, enabled=fp16):
            outputs = self.teacher.teacher_outputs(batched_inputs)
            targets = teacher_targets(outputs, **self.target_settings)
        for x, t in zip(batched_inputs, targets):
            x["teacher"] = t
        if self.trainer is not None:
            self.trainer.storage.put_scalar("teacher_time", time.perf_counter() - start)
        return batched_inputs


class _WithTeacherTargets:
    """A data loader whose batches pass through ``annotate``; ``start_iter`` (the batch a
    resumed run starts at) is the wrapped loader's."""

    def __init__(self, data_loader, annotate):
        self.data_loader = data_loader
        self.annotate = annotate

    @property
    def start_iter(self):
        return self.data_loader.start_iter

    @start_iter.setter
    def start_iter(self, value):
        self.data_loader.start_iter = value

    def __iter__(self):
        for batch in self.data_loader:
            yield self.annotate(batch)

    def __len__(self):
        return len(self.data_loader)
