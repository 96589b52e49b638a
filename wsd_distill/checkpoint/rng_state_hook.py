"""RNGStateHook: every rank's random number generators' state goes into every checkpoint."""

import logging
import random

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def rng_state():
    """This process's Python, NumPy and torch (CPU and CUDA) RNG states, as tensors and plain
    types (checkpoints are read with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateHook(HookBase):
    """Saves the RNG states of every rank with the trainer's checkpoints and restores each
    rank's own on resume, so that random layers (dropout) draw what they would have drawn in
    an uninterrupted run. With several processes, the states are gathered to the saving rank at
    each step where ``PeriodicCheckpointer`` saves (every ``checkpoint_period`` and the last):
    register this hook just before it. The states are restored in ``before_train``: it must
    come after hooks whose ``before_train`` draws random numbers (the TeacherHook builds a
    model)."""

    def __init__(self, checkpoint_period):
        self._period = checkpoint_period
        self._gathered = None  # every rank's state at the last checkpoint step
        self._loaded = None

    def after_step(self):
        if comm.get_world_size() == 1:
            return
        step = self.trainer.iter + 1
        if step % self._period == 0 or step >= self.trainer.max_iter:
            self._gathered = comm.all_gather(rng_state())  # (every rank takes part)

    def state_dict(self):
        if comm.get_world_size() == 1:
            return {"per_rank": [rng_state()]}
        return {"per_rank": self._gathered}

    def load_state_dict(self, state_dict):
        self._loaded = state_dict

    def before_train(self):
        if self._loaded is None:
            return
        states, rank = self._loaded["per_rank"], comm.get_rank()
        if len(states) != comm.get_world_size():
            logger.warning(
                f"The checkpoint holds the RNG states of {len(states)} processes, this run has "
                f"{comm.get_world_size()}: random layers will not draw as an uninterrupted run"
            )
        set_rng_state(states[rank % len(states)])
        self._loaded = None
