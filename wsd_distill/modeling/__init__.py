from .backbone import VGG, build_vgg_backbone
from .distill_losses import prediction_distill_loss, roi_feature_distill_loss, wsddn_soft_scores
from .student import StudentClassifier
from .wsddn import WSDDN, region_objectness, softmax_over_regions, wsddn_scores
