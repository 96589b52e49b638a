"""Box heads that turn pooled RoI features [R, C, S, S] into vectors [R, D]."""

import timm
from detectron2.modeling import build_backbone
from detectron2.modeling.roi_heads import Res5ROIHeads
from timm.layers import freeze_batch_norm_2d
from torch import nn

from .backbone.timm_backbone import timm_feature_names


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


class TimmC4BoxHead(nn.Module):
    """The layers of a timm EfficientNet (or MobileNet) after the map ``in_feature``
    (``stage<i>``, e.g. stage3 at stride 16: Lite0's blocks 5-6, its 1x1 ``conv_head`` and
    ``bn2``) run on each pooled RoI, then averaged: detectron2's C4 idiom (``Res5ROIHeads``) for
    these backbones, a pretrained RoI head. On the whole-image box, pooled at the map's own
    size, it gives the model's own pooled features. Its tensors keep timm's names under
    ``body.``; a backbone-only state dict (tools/convert_timm_weights.py) gives them their
    ImageNet values (``adopt_backbone_weights``). [R, C, S, S] -> [R, num_features]"""

    def __init__(self, model_name, in_feature, norm="FrozenBN"):
        super().__init__()
        body = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool="")
        stages = timm_feature_names(body.feature_info)[:-1]
        if not all(hasattr(body, n) for n in ("blocks", "conv_head", "bn2")):
            raise ValueError(
                f"MODEL.WSDDN.BOX_HEAD 'timm_c4' runs the blocks of an EfficientNet or MobileNet "
                f"(timm's blocks, conv_head, bn2); {model_name} has other layers"
            )
        if in_feature not in stages[:-1]:
            raise ValueError(
                f"MODEL.WSDDN.IN_FEATURE {in_feature!r}: the 'timm_c4' head starts after one of "
                f"{model_name}'s maps {stages[:-1]} (e.g. the stride-16 one)"
            )
        module = body.feature_info[stages.index(in_feature)]["module"]  # e.g. "blocks.4"
        self.first_block = int(module.split(".")[1]) + 1
        body.conv_stem, body.bn1 = nn.Identity(), nn.Identity()
        for i in range(self.first_block):  # (the later blocks keep their names)
            body.blocks[i] = nn.Identity()
        self.body = freeze_batch_norm_2d(body) if norm == "FrozenBN" else body
        self.out_channels = body.num_features

    def forward(self, x):
        x = self.body.blocks[self.first_block :](x)
        return self.body.bn2(self.body.conv_head(x)).mean(dim=(2, 3))

    def adopt_backbone_weights(self, state_dict, prefix, backbone_prefix):
        """Give the head's tensors (``prefix`` + name) their values in ``state_dict`` under
        the backbone's name (``backbone_prefix`` + name), moved, when the state dict holds none
        of the head's: ImageNet's weights of the whole model, written for the backbone."""
        names = self.state_dict().keys()
        if any(prefix + n in state_dict for n in names):
            return
        for name in names:
            if backbone_prefix + name in state_dict:
                state_dict[prefix + name] = state_dict.pop(backbone_prefix + name)


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
    if kind == "timm_c4":
        return timm.create_model(cfg.MODEL.TIMM.NAME, pretrained=False).num_features
    return build_backbone(cfg).output_shape()[cfg.MODEL.WSDDN.IN_FEATURE].channels  # "pool"


def build_wsddn_box_head(cfg, input_shape):
    """Returns (head, output dim) for ``MODEL.WSDDN.BOX_HEAD`` ("fc", "res5", "timm_c4" or
    "pool")."""
    if cfg.MODEL.WSDDN.BOX_HEAD == "pool":
        return AveragePoolBoxHead(cfg.MODEL.WSDDN.DROPOUT), input_shape.channels
    if cfg.MODEL.WSDDN.BOX_HEAD == "timm_c4":
        head = TimmC4BoxHead(cfg.MODEL.TIMM.NAME, cfg.MODEL.WSDDN.IN_FEATURE, cfg.MODEL.TIMM.NORM)
        return head, head.out_channels
    dim = wsddn_box_head_dim(cfg)
    if cfg.MODEL.WSDDN.BOX_HEAD == "fc":
        in_dim = input_shape.channels * input_shape.height * input_shape.width
        return FCBoxHead(in_dim, dim, cfg.MODEL.WSDDN.DROPOUT), dim
    res5, out_channels = Res5ROIHeads._build_res5_block(cfg)
    assert out_channels == dim, (out_channels, dim)
    return Res5BoxHead(res5), dim
