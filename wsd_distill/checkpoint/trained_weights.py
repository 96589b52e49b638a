"""Loading a trained run's weights strictly: the one loader of every tool, the KD stage 2 and
the teacher."""

import os
import pickle

import torch
from detectron2.utils.file_io import PathManager

from ..utils.safe_pickle import refusal


def load_trained_weights(model, path, key="MODEL.WEIGHTS", may_miss=()) -> dict:
    """Load a trained model's weights (a checkpoint of a wsd-distill run: a file or a URL)
    strictly: every parameter and buffer of ``model`` from ``path``, and nothing left over, or
    an error naming ``key``, the file and the keys (detectron2's loader only warns: a model
    with missing weights would predict from its random initialisation, a teacher distil from
    its random heads). Returns the checkpoint's other entries (e.g. "iteration",
    "class_names"). ``may_miss``: names of parameters the file may lack (they keep their
    initialisation)."""
    if not path:
        raise ValueError(f"{key} is empty: name the trained model's weights (or its run folder)")
    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"{key}: no such file '{path}'")
    try:  # (tensors and plain data only: a crafted file runs no code)
        with PathManager.open(path, "rb") as f:
            checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if refusal(e) is None:  # not a pickle: below
            raise ValueError(
                f"{key} '{path}' cannot be read ({e.__class__.__name__}): a file cut short or "
                f"not a checkpoint"
            ) from None
        raise ValueError(
            f"{key} '{path}' holds more than tensors and plain data ({refusal(e)}): "
            f"refused, nothing of it was run"
        ) from None
    except Exception as e:  # torch.load's errors for a cut or foreign file vary
        raise ValueError(
            f"{key} '{path}' cannot be read ({e.__class__.__name__}: {str(e)[:200]}): a file "
            f"cut short or not a checkpoint"
        ) from e
    state = checkpoint.pop("model", None) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{key} '{path}' is not a checkpoint of a wsd-distill run (no 'model')")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ
        problems = str(e).split(":", 1)[-1].strip()
        raise ValueError(
            f"{key} '{path}' does not fit the model of this config: {problems[:500]}"
        ) from None
    missing = [k for k in missing if k not in may_miss]
    if missing or unexpected:
        raise ValueError(
            f"{key} '{path}' does not fit the model of this config: "
            + "; ".join(
                f"{len(keys)} {what} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
                for what, keys in (("missing", missing), ("unexpected", unexpected))
                if keys
            )
            + ": weights of another architecture or config (use the run's own config.yaml)"
        )
    return checkpoint
