"""The teacher's box heads, in detectron2's ``ROI_BOX_HEAD_REGISTRY`` (``MODEL.ROI_BOX_HEAD.NAME``):
pooled RoI features [R, C, S, S] -> vectors [R, D], D = ``output_shape.channels``."""

import timm
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, Res5ROIHeads, build_box_head
from timm.layers import freeze_batch_norm_2d
from torch import nn

from .backbone.timm_backbone import timm_feature_names


@ROI_BOX_HEAD_REGISTRY.register()
class FCBoxHead(nn.Sequential):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout: VGG-16's classifier in Fast R-CNN/WSDDN
    (``MODEL.ROI_BOX_HEAD.FC_DIM`` wide, ``.DROPOUT``)."""

    @configurable
    def __init__(
        self,
        in_dim,
        fc_dim,
        dropout,
    ):
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.output_shape = ShapeSpec(channels=fc_dim)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "in_dim": input_shape.channels * input_shape.height * input_shape.width,
            "fc_dim": cfg.MODEL.ROI_BOX_HEAD.FC_DIM,
            "dropout": cfg.MODEL.ROI_BOX_HEAD.DROPOUT,
        }


@ROI_BOX_HEAD_REGISTRY.register()
class Res5BoxHead(nn.Module):
    """The ResNet res5 stage on pooled features, then average pooling (detectron2's C4 models)."""

    def __init__(self, cfg, input_shape):
        super().__init__()
        self.res5, out_channels = Res5ROIHeads._build_res5_block(cfg)
        self.output_shape = ShapeSpec(channels=out_channels)

    def forward(self, x):
        return self.res5(x).mean(dim=(2, 3))


@ROI_BOX_HEAD_REGISTRY.register()
class TimmC4BoxHead(nn.Module):
    """The layers of a timm EfficientNet (or MobileNet) after the map ``in_feature``
    (``stage<i>``, e.g. stage3 at stride 16: Lite0's blocks 5-6, its 1x1 ``conv_head`` and
    ``bn2``) run on each pooled RoI, then averaged: detectron2's C4 idiom (``Res5ROIHeads``) for
    these backbones, a pretrained RoI head. On the whole-image box, pooled at the map's own
    size, it gives the model's own pooled features. Its tensors keep timm's names under
    ``body.``; a backbone-only state dict (tools/convert_timm_weights.py) gives them their
    ImageNet values (``adopt_backbone_weights``). [R, C, S, S] -> [R, num_features]"""

    @configurable
    def __init__(
        self,
        model_name,
        in_feature,
        norm="FrozenBN",
    ):
        super().__init__()
        body = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool="")
        stages = timm_feature_names(body.feature_info)[:-1]
        if not all(hasattr(body, n) for n in ("blocks", "conv_head", "bn2")):
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.NAME 'TimmC4BoxHead' runs the blocks of an EfficientNet or "
                f"MobileNet (timm's blocks, conv_head, bn2); {model_name} has other layers"
            )
        if in_feature not in stages[:-1]:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES [{in_feature!r}]: TimmC4BoxHead starts after one of "
                f"{model_name}'s maps {stages[:-1]} (e.g. the stride-16 one)"
            )
        module = body.feature_info[stages.index(in_feature)]["module"]  # e.g. "blocks.4"
        self.first_block = int(module.split(".")[1]) + 1
        body.conv_stem, body.bn1 = nn.Identity(), nn.Identity()
        for i in range(self.first_block):  # (the later blocks keep their names)
            body.blocks[i] = nn.Identity()
        self.body = freeze_batch_norm_2d(body) if norm == "FrozenBN" else body
        self.output_shape = ShapeSpec(channels=body.num_features)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "model_name": cfg.MODEL.TIMM.NAME,
            "in_feature": cfg.MODEL.ROI_HEADS.IN_FEATURES[0],
            "norm": cfg.MODEL.TIMM.NORM,
        }

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


@ROI_BOX_HEAD_REGISTRY.register()
class AveragePoolBoxHead(nn.Sequential):
    """Each pooled RoI averaged over its bins, then dropout: [R, C, S, S] -> [R, C]; no new
    layer, for a pretrained map (a timm backbone's)."""

    def __init__(self, cfg, input_shape):
        super().__init__(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.MODEL.ROI_BOX_HEAD.DROPOUT)
        )
        self.output_shape = ShapeSpec(channels=input_shape.channels)


def box_head_width(cfg):
    """Width D of the RoI features [R, D] of ``MODEL.ROI_BOX_HEAD.NAME`` (built only for a head
    of another registry entry)."""
    name = cfg.MODEL.ROI_BOX_HEAD.NAME
    if name == "FCBoxHead":
        return cfg.MODEL.ROI_BOX_HEAD.FC_DIM
    if name == "Res5BoxHead":
        return cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8  # as Res5ROIHeads._build_res5_block
    if name == "TimmC4BoxHead":
        return timm.create_model(cfg.MODEL.TIMM.NAME, pretrained=False).num_features
    channels = build_backbone(cfg).output_shape()[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
    if name == "AveragePoolBoxHead":
        return channels
    size = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    pooled = ShapeSpec(channels=channels, height=size, width=size)
    return build_box_head(cfg, pooled).output_shape.channels
