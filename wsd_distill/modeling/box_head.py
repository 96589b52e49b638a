"""Box heads that turn pooled RoI features [R, C, S, S] into vectors [R, D]."""

from detectron2.modeling import build_backbone
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn


class FCBoxHead(nn.Sequential):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout: VGG-16's classifier in Fast R-CNN/WSDDN."""

    def __init__(self, in_dim, fc_dim, dropout):
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


class Res5BoxHead(nn.Module):
    """The ResNet res5 stage on pooled features, then average pooling (detectron2's C4 models)."""

    def __init__(self, res5):
        super().__init__()
        self.res5 = res5

    def forward(self, x):
        return self.res5(x).mean(dim=(2, 3))


class AveragePoolBoxHead(nn.Sequential):
    """Each pooled RoI averaged over its bins, then dropout: [R, C, S, S] -> [R, C]."""

    def __init__(self, dropout):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))


def wsddn_box_head_dim(cfg):
    """Width D of the RoI features [R, D] the box head of ``MODEL.WSDDN.BOX_HEAD`` outputs."""
    kind = cfg.MODEL.WSDDN.BOX_HEAD
    if kind == "fc":
        return cfg.MODEL.WSDDN.FC_DIM
    if kind == "res5":
        return cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8  # as Res5ROIHeads._build_res5_block
    return build_backbone(cfg).output_shape()[cfg.MODEL.WSDDN.IN_FEATURE].channels  # "pool"


def build_wsddn_box_head(cfg, input_shape):
    """Returns (head, output dim) for ``MODEL.WSDDN.BOX_HEAD`` ("fc", "res5" or "pool")."""
    if cfg.MODEL.WSDDN.BOX_HEAD == "pool":
        return AveragePoolBoxHead(cfg.MODEL.WSDDN.DROPOUT), input_shape.channels
    dim = wsddn_box_head_dim(cfg)
    if cfg.MODEL.WSDDN.BOX_HEAD == "fc":
        in_dim = input_shape.channels * input_shape.height * input_shape.width
        return FCBoxHead(in_dim, dim, cfg.MODEL.WSDDN.DROPOUT), dim
    res5, out_channels = Res5ROIHeads._build_res5_block(cfg)
    assert out_channels == dim, (out_channels, dim)
    return Res5BoxHead(res5), dim
