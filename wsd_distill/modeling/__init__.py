from .backbone import VGG, TimmBackbone, build_timm_backbone, build_vgg_backbone
from .box_average_pool import box_average_pool
from .distill_losses import prediction_distill_loss, roi_feature_distill_loss
from .proposal_generator import (
    Detectron2Proposals,
    EdgeBoxesProposals,
    ImageProposalGenerator,
    SelectiveSearchProposals,
)
from .student import StudentClassifier
from .student_head import StudentHead
from .teacher import build_teacher, teacher_targets, wsddn_soft_scores
from .wsddn import WSDDN, region_objectness, softmax_over_regions, wsddn_scores
