"""The student's side of feature distillation: RoI features of its own maps, in the teacher's width."""
from torch import nn

from detectron2.modeling.poolers import ROIPooler


class RoIFeatureAdapter(nn.Module):
    """RoI-pools each of the student's feature maps in ``levels`` on the given boxes and maps
    the pooled features [N, C, P, P] to the teacher's RoI-feature width D with a 1x1 convolution
    averaged over the P x P bins (one per level; C x D weights, the shape of the teacher's own
    res5 head: convolutions, then the mean), so each level regresses the teacher's f_T (Eq. 3).

    Args:
        input_shapes (dict[str, ShapeSpec]): the student backbone's output shapes.
        levels (list[str]): feature maps to pool, e.g. ["res4"] or ["res4", "res5"].
        output_dim (int): D, the teacher's RoI-feature width.
    """

    def __init__(self, input_shapes, levels, output_dim, resolution=7, sampling_ratio=0, pooler_type="ROIAlignV2"):
        super().__init__()
        missing = [level for level in levels if level not in input_shapes]
        if missing or not levels:
            raise KeyError(
                f"MODEL.DISTILL.FEATURE_LEVELS {list(levels)} must name backbone outputs ({sorted(input_shapes)}): "
                f"add them to the backbone's OUT_FEATURES"
            )
        self.levels = list(levels)
        self.poolers = {
            level: ROIPooler(resolution, (1.0 / input_shapes[level].stride,), sampling_ratio, pooler_type) for level in levels
        }
        self.adapters = nn.ModuleDict({level: nn.Conv2d(input_shapes[level].channels, output_dim, 1) for level in levels})

    def forward(self, features, boxes):
        """features: {level: [B, C, H, W]}; boxes: list[Boxes] (B, in the student's input
        pixels) -> {level: [N, D]}, N the total number of boxes."""
        # mean over the bins first: a 1x1 convolution is linear, so it commutes with the mean
        # (P^2 times less work in the adapter and its backward)
        return {
            level: self.adapters[level](self.poolers[level]([features[level]], boxes).mean(dim=(2, 3), keepdim=True)).flatten(1)
            for level in self.levels
        }
