"""An exponential moving average of the trained weights (``MODEL.EMA``; beyond the paper, as
ASL's ``ModelEma``): updated after every step, checkpointed as "model_ema" and resumed exactly;
evaluation and ``load_trained_weights`` use it."""

import contextlib

import torch
from detectron2.engine import HookBase
from torch.nn.parallel import DistributedDataParallel


def unwrap(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


class ModelEMA:
    """``ema = decay * ema + (1 - decay) * w`` for every floating-point entry of a model's state
    dict (parameters and batch-norm statistics, as ASL's), other entries copied; a checkpointable
    (``state_dict`` / ``load_state_dict``) of the trainer's checkpointer."""

    def __init__(self, decay):
        self.decay = decay
        self.state = None  # {name: tensor} once started or loaded

    @torch.no_grad()
    def update(self, model):
        """Start from ``model``'s weights (first call without a loaded state), or average them
        in."""
        weights = unwrap(model).state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in weights.items()}
            return
        for name, value in weights.items():
            average = self.state[name]
            if average.device != value.device:  # loaded from a checkpoint on the CPU
                average = self.state[name] = average.to(value.device)
            if average.is_floating_point():
                average.lerp_(value.detach(), 1 - self.decay)
            else:
                average.copy_(value)

    @contextlib.contextmanager
    def applied_to(self, model):
        """``model`` holds the average inside the block, its own weights again after it."""
        model = unwrap(model)
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def state_dict(self):
        return self.state or {}

    def load_state_dict(self, state_dict):
        self.state = dict(state_dict) or None


class EMAHook(HookBase):
    """Updates ``ema`` (a :class:`ModelEMA`) with the trained model: from its weights before
    the first step (those loaded, or on ``--resume`` the checkpoint's average), then after
    every step."""

    def __init__(self, ema):
        self.ema = ema

    def before_train(self):
        if self.ema.state is None:
            self.ema.update(self.trainer.model)

    def after_step(self):
        self.ema.update(self.trainer.model)
