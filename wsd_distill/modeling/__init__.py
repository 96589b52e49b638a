from .backbone import VGG, build_vgg_backbone
from .wsddn import WSDDN, softmax_over_regions, wsddn_scores
