"""A checkpointer that never writes a diverged model and resumes past an unreadable one."""

import logging
import os
import pickle
import re

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils import atomic_write, atomic_write_bytes
from ..utils.safe_pickle import load_data_pickle, refusal

logger = logging.getLogger(__name__)


def readable(path):
    """None when ``torch.load`` reads the file ``path`` as tensors and plain data, else why
    not (a short message)."""
    try:
        with open(path, "rb") as f:
            torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if refusal(e) is None:
            return f"unreadable: {e.__class__.__name__}: not a checkpoint, or cut short"
        return f"refused: more than tensors and plain data ({refusal(e)})"
    except Exception as e:  # torch.load's errors for a cut file vary by where it stops
        return f"unreadable: {e.__class__.__name__}: {str(e)[:200]}"
    return None


class UnreadableCheckpointError(RuntimeError):
    """No checkpoint of a run to resume can be read."""


class FiniteCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` whose ``save`` refuses a model holding a non-finite
    parameter or buffer: a diverged run stops there, and ``last_checkpoint`` keeps naming the
    last good checkpoint (detectron2 notices non-finite losses only some steps later). On
    ``--resume``, a last checkpoint that cannot be read (a file cut short by a full disk or a
    crash while copying) is skipped, with a warning, for the newest earlier one that can.
    ``class_names`` (the config's MODEL.CLASS_NAMES) are saved in every checkpoint."""

    def __init__(self, model, save_dir="", *, class_names=(), **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.class_names = list(class_names)

    def _log_incompatible_keys(self, incompatible):
        """fvcore's warnings, but the model's new layers (its ``NEW_LAYERS`` and the class
        count buffer), which pretrained weights never hold, in one line that says so."""
        model = getattr(self.model, "module", self.model)  # (DistributedDataParallel's)
        new = tuple(f"{name}." for name in getattr(model, "NEW_LAYERS", ())) + ("class_count",)
        expected = [k for k in incompatible.missing_keys if k.startswith(new)]
        if expected:
            layers = sorted({k.split(".")[0] for k in expected})
            self.logger.info(
                f"Pretrained weights hold no {', '.join(layers)}: the model's new layers, "
                "which start from their initialisation (as expected)"
            )
        missing = [k for k in incompatible.missing_keys if k not in expected]
        super()._log_incompatible_keys(incompatible._replace(missing_keys=missing))

    def save(self, name, **kwargs):
        """fvcore's ``Checkpointer.save``, written atomically (``atomic_write``): a crash or a
        full disk while saving leaves the previous files as they were."""
        bad = [
            key
            for key, value in self.model.state_dict().items()
            if value.is_floating_point() and not torch.isfinite(value).all()
        ]
        if bad:
            raise FloatingPointError(
                f"Not saving {name}: the model has non-finite values in {len(bad)} tensors "
                f"({', '.join(bad[:3])}...): training diverged; lower SOLVER.BASE_LR, or add "
                f"SOLVER.CLIP_GRADIENTS, and resume from the last checkpoint"
            )
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        if self.class_names:
            data["class_names"] = self.class_names
        data.update(kwargs)
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {path}")
        atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(f"{name}.pth")

    def _torch_load(self, f):
        """A checkpoint read as tensors and plain data only (``weights_only``): a crafted
        file runs no code; what cannot be read so is refused, naming the file."""
        try:
            with self.path_manager.open(f, "rb") as file:
                return torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            what = (
                "is not a checkpoint, or is cut short"
                if refusal(e) is None
                else (
                    f"holds more than tensors and plain data ({refusal(e)}): refused, nothing of "
                    f"it was run"
                )
            )
            raise ValueError(f"{f} {what}") from None

    def _load_file(self, filename):
        """detectron2's loader, its model-zoo ``.pkl`` (NumPy arrays) read as plain data
        (``load_data_pickle``), other files by :meth:`_torch_load`."""
        if not filename.endswith(".pkl"):
            return super()._load_file(filename)
        with self.path_manager.open(filename, "rb") as f:
            data = load_data_pickle(f, filename)
        if "model" in data and "__author__" in data:  # detectron2's model zoo format
            return data
        data = data.get("blobs", data)  # Caffe2 / Detectron1 (ImageNet models have no blobs)
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write_bytes(path, last_filename_basename.encode())

    def ensure_final(self, iteration):
        """On a run resumed at or past its last iteration: a ``model_final.pth`` that is
        missing or cannot be read (a crash while an older version wrote it) is written again
        from the resumed model (``iteration``: its last step)."""
        path = os.path.join(self.save_dir, "model_final.pth")
        why = readable(path) if os.path.isfile(path) else "missing"
        if why is None:
            return
        logger.warning(f"{path} is {why}: writing it again from the resumed checkpoint")
        self.save("model_final", iteration=iteration)

    def resume_or_load(self, path, *, resume=True):
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        last = self.get_checkpoint_file()
        candidates = [last] + [f for f in self.earlier_checkpoints() if f != last]
        for i, candidate in enumerate(candidates):
            why = readable(candidate)  # read once, as fvcore's load() reads it
            if why is None:
                return self.load(candidate)
            later = f"; resuming from {candidates[i + 1]}" if i + 1 < len(candidates) else ""
            logger.warning(f"Cannot read checkpoint {candidate} ({why}){later}")
        raise UnreadableCheckpointError(
            f"--resume: none of the checkpoints in {self.save_dir} can be read "
            f"({', '.join(os.path.basename(c) for c in candidates)}): start a new run"
        )

    def earlier_checkpoints(self):
        """The periodic checkpoints ``model_<iteration>.pth`` of ``save_dir``, newest first."""
        names = [
            n for n in self.path_manager.ls(self.save_dir) if re.fullmatch(r"model_\d+\.pth", n)
        ]
        return [os.path.join(self.save_dir, n) for n in sorted(names, reverse=True)]
