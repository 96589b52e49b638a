"""RNGStateHook: the random number generators' state goes into every checkpoint."""

import random

import numpy as np
import torch
from detectron2.engine import HookBase


class RNGStateHook(HookBase):
    """Saves the Python, NumPy and torch (CPU and CUDA) RNG states with the trainer's checkpoints
    and restores them on resume, so that random layers (dropout) draw what they would have drawn
    in an uninterrupted run. The state is restored in ``before_train``: register this hook last,
    after hooks whose ``before_train`` draws random numbers (the TeacherHook builds a model)."""

    def __init__(self):
        self._loaded = None

    def state_dict(self):
        # tensors and plain types only: checkpoints are read with torch.load(weights_only=True)
        name, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
        state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict):
        self._loaded = state_dict

    def before_train(self):
        if self._loaded is None:
            return
        random.setstate(self._loaded["python"])
        name, keys, pos, has_gauss, cached = self._loaded["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(self._loaded["torch"])
        if "cuda" in self._loaded and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._loaded["cuda"])
        self._loaded = None
