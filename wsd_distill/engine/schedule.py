"""Training schedules sized to a dataset or a time budget: ``scale_schedule`` stretches a
config's schedule as a whole, ``time_per_iteration`` times a few of its training iterations."""

import logging
import os
import shutil
import time

import numpy as np
from detectron2.engine import HookBase
from tabulate import tabulate

from ..utils import atomic_write_bytes
from .defaults import RUN_CONFIG
from .trainer import Trainer


def scale_schedule(cfg, factor):
    """``cfg`` with a schedule ``factor`` times as long, in place: SOLVER.MAX_ITER, STEPS,
    WARMUP_ITERS, CHECKPOINT_PERIOD and TEST.EVAL_PERIOD (as detectron2's
    ``DefaultTrainer.auto_scale_workers`` scales them for another batch size; the learning
    rate stays). Each stays at least 1 where it was positive. Returns ``cfg``."""

    def scaled(n):
        return max(1, round(n * factor)) if n > 0 else n

    was_frozen = cfg.is_frozen()
    cfg.defrost()
    s = cfg.SOLVER
    s.MAX_ITER = scaled(s.MAX_ITER)
    s.STEPS = tuple(scaled(step) for step in s.STEPS)
    s.WARMUP_ITERS = round(s.WARMUP_ITERS * factor)
    s.CHECKPOINT_PERIOD = scaled(s.CHECKPOINT_PERIOD)
    cfg.TEST.EVAL_PERIOD = scaled(cfg.TEST.EVAL_PERIOD)
    if was_frozen:
        cfg.freeze()
    return cfg


def schedule_epochs(cfg, num_images):
    """Passes over a training set of ``num_images`` images in ``cfg``'s schedule."""
    return cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH / num_images


class _StepStarts(HookBase):
    """The time each training step started."""

    def __init__(self):
        self.starts = []

    def before_step(self):
        self.starts.append(time.perf_counter())


def time_per_iteration(cfg, folder, iterations=3):
    """Seconds per training iteration of ``cfg`` (the median of ``iterations`` timed ones,
    after one untimed, in which the data loader starts): a short run into ``folder``, which
    holds its config.yaml and model_final.pth afterwards (a run folder, e.g. for the teacher
    of a KD config's timing); nothing is evaluated, and detectron2 logs only warnings."""
    cfg = scale_schedule(cfg.clone(), (iterations + 2) / cfg.SOLVER.MAX_ITER)
    cfg.defrost()
    cfg.OUTPUT_DIR, cfg.DATASETS.TEST, cfg.TEST.EVAL_PERIOD = folder, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = cfg.SOLVER.MAX_ITER + 1  # model_final.pth only
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    atomic_write_bytes(os.path.join(folder, RUN_CONFIG), cfg.dump().encode())
    detectron2_logger = logging.getLogger("detectron2")
    level = detectron2_logger.level
    detectron2_logger.setLevel(logging.WARNING)
    try:
        trainer = Trainer(cfg)
        timer = _StepStarts()
        trainer.register_hooks([timer])
        trainer.resume_or_load(resume=False)
        trainer.train()
    finally:
        detectron2_logger.setLevel(level)
    return float(np.median(np.diff(timer.starts)[1:]))


def plan_table(runs, configs, seconds, train, images, factor=1.0, teacher_cache=False):
    """The training plan as text: each run of ``runs`` (names) with its config's iterations,
    its epochs of the dataset ``train`` (``images`` images) and, where ``seconds`` (its
    seconds per iteration, or None) are known, its minutes and their total."""
    timed = all(s is not None for s in seconds)
    rows = [
        [run, cfg.SOLVER.MAX_ITER, f"{schedule_epochs(cfg, images):.1f}"]
        + ([f"{s:.2f}", f"{cfg.SOLVER.MAX_ITER * s / 60:.1f}"] if timed else [])
        for run, cfg, s in zip(runs, configs, seconds)
    ]
    headers = ["run", "iterations", f"epochs of {train}"]
    text = "The training left" + (f", schedules x{factor:.3g}" if factor != 1 else "")
    if not timed:
        table = tabulate(rows, headers, disable_numparse=True)
        return f"{text} (not timed: too short to be worth it):\n{table}"
    total = sum(c.SOLVER.MAX_ITER * s for c, s in zip(configs, seconds)) / 60
    return (
        f"{text} (seconds per iteration timed here, on a few of each model):\n"
        + tabulate(rows, headers + ["s/iteration", "minutes"], disable_numparse=True)
        + f"\nAbout {total:.0f} min of training, evaluation and pictures not counted"
        + (
            "; the KD runs timed with the teacher at every step (less from the cache, which "
            "is not counted either)"
            if teacher_cache
            else ""
        )
        + "."
    )
