from .timm_backbone import TimmBackbone, build_timm_backbone
from .vgg import VGG, build_vgg_backbone
