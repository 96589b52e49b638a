"""A checkpointer that never writes a diverged model."""

import torch
from detectron2.checkpoint import DetectionCheckpointer


class FiniteCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` whose ``save`` refuses a model holding a non-finite
    parameter or buffer: a diverged run stops there, and ``last_checkpoint`` keeps naming the
    last good checkpoint (detectron2 notices non-finite losses only some steps later)."""

    def save(self, name, **kwargs):
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
        super().save(name, **kwargs)
