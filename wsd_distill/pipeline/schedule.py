"""Training schedules and their time: ``scale_schedule`` stretches a config's schedule as a
whole, ``median_step_times`` times training steps (the pipeline's plan, the benchmarks)."""

import logging
import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import hooks
from detectron2.modeling import build_model
from tabulate import tabulate

from ..engine.defaults import RUN_CONFIG, RUN_WEIGHTS
from ..engine.trainer import Trainer
from ..utils import atomic_write_bytes

# More iterations than any schedule trains (a year at 30 steps a second): --epochs 1e308 is a typo
MAX_ITERATIONS = 10**9


def scale_schedule(cfg, factor):
    """``cfg`` with a schedule ``factor`` times as long, in place: SOLVER.MAX_ITER, STEPS,
    WARMUP_ITERS, CHECKPOINT_PERIOD and TEST.EVAL_PERIOD (as detectron2's
    ``DefaultTrainer.auto_scale_workers`` scales them for another batch size; the learning
    rate stays). Each stays at least 1 where it was positive. Returns ``cfg``; a schedule of
    more than ``MAX_ITERATIONS`` is refused (a ValueError), before anything is written."""
    if not factor * cfg.SOLVER.MAX_ITER <= MAX_ITERATIONS:
        raise ValueError(
            f"A schedule x{factor:.3g} (--epochs, --budget) gives SOLVER.MAX_ITER "
            f"{cfg.SOLVER.MAX_ITER} x {factor:.3g} iterations, more than {MAX_ITERATIONS:.0e}: "
            f"ask for fewer epochs or minutes"
        )

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


def random_teacher(teacher_cfg, folder):
    """A run folder of ``teacher_cfg`` with random weights (its config.yaml and model_final.pth;
    speed does not depend on the weights), made once; returns ``folder``."""
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(os.path.join(folder, RUN_WEIGHTS)):
        model = build_model(teacher_cfg)
        DetectionCheckpointer(model, save_dir=folder).save("model_final")
    atomic_write_bytes(os.path.join(folder, RUN_CONFIG), teacher_cfg.dump().encode())
    return folder


class StepTimer(Trainer):
    """wsd-distill's ``Trainer`` without its checkpointer and evaluation hooks: every step
    as in training (data loader, ``TeacherHook``, AMP), only its logs written."""

    def build_hooks(self):
        dropped = (hooks.PeriodicCheckpointer, hooks.EvalHook)
        return [h for h in super().build_hooks() if not isinstance(h, dropped)]


def median_step_times(cfg, warmup=5):
    """Train ``cfg`` for ``SOLVER.MAX_ITER`` steps; the median seconds per step after
    ``warmup`` steps of detectron2's ``time`` (the whole step), ``data_time`` (waiting for the
    batch, the teacher's forward included) and ``teacher_time``; and the peak GPU memory."""
    if cfg.MODEL.DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = StepTimer(cfg.clone())
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    if "time" not in history:  # detectron2's IterationTimer logs it from the third step on
        raise ValueError(f"SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}: too few steps to time")
    times = {
        k: float(np.median([v for v, it in history[k].values() if it >= warmup]))
        for k in ("time", "data_time", "teacher_time")
        if k in history
    }
    times.setdefault("teacher_time", 0.0)
    if cfg.MODEL.DEVICE == "cuda":
        times["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return times


def time_per_iteration(cfg, folder, iterations=3):
    """Seconds per training iteration of ``cfg``: the median of ``iterations`` steps after two
    untimed ones (the data loader starting), logs in ``folder``; detectron2 logs only
    warnings meanwhile."""
    cfg = scale_schedule(cfg.clone(), (iterations + 2) / cfg.SOLVER.MAX_ITER)
    cfg.defrost()
    cfg.OUTPUT_DIR, cfg.DATASETS.TEST = folder, ()
    detectron2_logger = logging.getLogger("detectron2")
    level = detectron2_logger.level
    detectron2_logger.setLevel(logging.WARNING)
    try:
        return median_step_times(cfg, warmup=2)["time"]
    finally:
        detectron2_logger.setLevel(level)


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
