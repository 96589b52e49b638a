"""VGG-style backbone (the paper's VGG-16, or a narrow one for CPU-sized runs)."""

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn
from torch.nn import functional as F


class VGG(Backbone):
    """Stages ``conv1 ... convN`` of 3x3 convolutions + ReLU; a 2x2 max-pool precedes every
    stage but the first, so stage ``i`` has stride ``2**(i-1)`` (VGG-16's conv5_3: stride 16,
    as Fast R-CNN and WSDDN pool RoIs from it).

    Args:
        stage_channels (list[list[int]]): output channels of each conv, per stage.
        norm (str): "" (VGG-16) or a detectron2 norm such as "BN" (for training from scratch).
        out_features (list[str]): stages to return, e.g. ["conv5"].
    """

    def __init__(self, in_channels, stage_channels, norm="", out_features=None):
        super().__init__()
        self.stage_names = [f"conv{i + 1}" for i in range(len(stage_channels))]
        self._out_features = out_features or self.stage_names[-1:]
        self._out_feature_strides, self._out_feature_channels = {}, {}
        for i, (name, channels) in enumerate(zip(self.stage_names, stage_channels)):
            layers = []
            for c in channels:
                layers += [
                    Conv2d(in_channels, c, 3, padding=1, bias=not norm, norm=get_norm(norm, c)),
                    nn.ReLU(inplace=True),
                ]
                in_channels = c
            self.add_module(name, nn.Sequential(*layers))
            self._out_feature_strides[name], self._out_feature_channels[name] = 2**i, in_channels
        unknown = set(self._out_features) - set(self.stage_names)
        if unknown:
            raise ValueError(f"MODEL.VGG.OUT_FEATURES {sorted(unknown)} not in {self.stage_names}")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        """x: [B, C, H, W] -> {stage name: [B, C_i, H / stride_i, W / stride_i]}."""
        outputs = {}
        for i, name in enumerate(self.stage_names):
            if i > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self):
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vgg_backbone(cfg, input_shape):
    return VGG(
        input_shape.channels,
        cfg.MODEL.VGG.STAGE_CHANNELS,
        cfg.MODEL.VGG.NORM,
        cfg.MODEL.VGG.OUT_FEATURES,
    )
