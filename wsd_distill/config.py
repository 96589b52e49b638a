"""Config keys added by wsd-distill; every key has its default and a one-line comment."""

import os

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def add_wsd_distill_config(cfg):
    """Add wsd-distill's keys to a detectron2 config (in place) and return it.

    Proposals reuse detectron2's own keys: ``MODEL.LOAD_PROPOSALS``,
    ``DATASETS.PROPOSAL_FILES_TRAIN/TEST``, ``DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN/TEST``
    and ``MODEL.PROPOSAL_GENERATOR.MIN_SIZE``; dropping training images without labels
    reuses ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``.
    """
    _C = cfg

    # The embedded synthetic shapes benchmark (datasets "synthetic_shapes_{train,val,test}"),
    # generated under $DETECTRON2_DATASETS/synthetic_shapes on first use.
    _C.DATASETS.SYNTHETIC = CN()
    _C.DATASETS.SYNTHETIC.NUM_TRAIN = 3000  # images in synthetic_shapes_train
    _C.DATASETS.SYNTHETIC.NUM_VAL = 500  # images in synthetic_shapes_val
    _C.DATASETS.SYNTHETIC.NUM_TEST = 1000  # images in synthetic_shapes_test
    _C.DATASETS.SYNTHETIC.IMAGE_SIZE = 128  # side of the square images, in pixels
    _C.DATASETS.SYNTHETIC.SEED = 0  # generator seed: same seed and sizes, same bytes
    _C.DATASETS.SYNTHETIC.OBJECT_SIZE = (0.1, 0.45)  # object diameters, fraction of the image side
    _C.DATASETS.SYNTHETIC.DISTRACTORS = (2, 8)  # distractors (strokes, noise blobs) per image

    # WSDDN teacher (T-WDet), MODEL.META_ARCHITECTURE "WSDDN".
    _C.MODEL.WSDDN = CN()
    _C.MODEL.WSDDN.NUM_CLASSES = 80  # must equal the datasets' class count (checked by the Trainer)
    _C.MODEL.WSDDN.IN_FEATURE = "res4"  # backbone feature map the RoIs are pooled from
    _C.MODEL.WSDDN.POOLER_RESOLUTION = 14  # RoI pooling output size (14 for a res5 head, 7 for fc)
    _C.MODEL.WSDDN.POOLER_SAMPLING_RATIO = 0  # ROIAlign sampling points per bin (0: adaptive)
    _C.MODEL.WSDDN.POOLER_TYPE = "ROIAlignV2"  # any detectron2 ROIPooler type
    _C.MODEL.WSDDN.BOX_HEAD = "res5"  # "res5" (ResNet C4 stage) or "fc" (fc6/fc7, as VGG-16)
    _C.MODEL.WSDDN.FC_DIM = 4096  # width of fc6/fc7 for the "fc" head
    _C.MODEL.WSDDN.DROPOUT = 0.5  # dropout after fc6 and fc7
    _C.MODEL.WSDDN.MAX_PROPOSALS = 500  # proposals per image, best by objectness (authors: 500)
    _C.MODEL.WSDDN.SCORE_EPS = 1e-6  # image scores are clamped into (eps, 1 - eps) for the BCE
    _C.MODEL.WSDDN.REFINE_ITERS = 0  # OICR instance refinement branches (0: plain WSDDN)
    _C.MODEL.WSDDN.REFINE_IOU = 0.5  # IoU with a pseudo-labelled top region to share its class
    _C.MODEL.WSDDN.SCORE_THRESH_TEST = 1e-4  # region scores kept as detections (they sum to <= 1)
    _C.MODEL.WSDDN.NMS_THRESH_TEST = 0.4  # per-class NMS IoU for detections

    # Student S-Cls, MODEL.META_ARCHITECTURE "StudentClassifier".
    _C.MODEL.STUDENT = CN()
    _C.MODEL.STUDENT.NUM_CLASSES = (
        80  # must equal the datasets' class count (checked by the Trainer)
    )
    _C.MODEL.STUDENT.IN_FEATURE = "res5"  # backbone feature map that is pooled globally
    _C.MODEL.STUDENT.POOLING = "avg"  # "avg", "max", or "avgmax" (both, concatenated)
    _C.MODEL.STUDENT.INPUT_SIZE = 224  # each image is resized to this square (0: the loader's size)

    # Distillation from a frozen teacher (TeacherHook + StudentClassifier), Liu et al. 2018.
    _C.MODEL.DISTILL = CN()
    _C.MODEL.DISTILL.ENABLED = False  # off: the "S-Cls w/o KD" baseline, no teacher is built
    _C.MODEL.DISTILL.TEACHER_CONFIG = ""  # the teacher's config file (a WSDDN)
    _C.MODEL.DISTILL.TEACHER_WEIGHTS = ""  # its trained weights
    _C.MODEL.DISTILL.TEACHER_FP16 = False  # run the teacher under fp16 autocast (CUDA only)
    _C.MODEL.DISTILL.LABEL_WEIGHT = 1.0  # weight of loss_cls, BCE with the labels (L_p)
    _C.MODEL.DISTILL.PREDICTION_WEIGHT = 1.0  # weight of loss_kd_pred (L_p', Eq. 10); 0: off
    _C.MODEL.DISTILL.FEATURE_WEIGHT = 1.0  # weight of loss_kd_feat (L_f, Eq. 3); 0: off
    _C.MODEL.DISTILL.TEMPERATURE = 5.0  # t of the student's sigmoid(z / t) in L_p'
    _C.MODEL.DISTILL.TEACHER_CLS_TEMPERATURE = 0.5  # t_c of the teacher's softmax over classes
    _C.MODEL.DISTILL.TEACHER_DET_TEMPERATURE = 0.5  # t_d of the teacher's softmax over regions
    _C.MODEL.DISTILL.FEATURE_LEVELS = ["res4"]  # student feature maps RoI-pooled for L_f
    _C.MODEL.DISTILL.ROI_SELECT = "all"  # RoIs for L_f: "all" the teacher's, or "top" by objectness
    _C.MODEL.DISTILL.ROI_TOPK = 64  # RoIs per image kept by ROI_SELECT "top" (max_k S_rk)
    _C.MODEL.DISTILL.POOLER_RESOLUTION = 7  # the student's RoI pooling output size
    _C.MODEL.DISTILL.POOLER_SAMPLING_RATIO = 0  # ROIAlign sampling points per bin (0: adaptive)
    _C.MODEL.DISTILL.POOLER_TYPE = (
        "ROIAlignV2"  # any ROIPooler type, or "BoxMean" (exact box average, cheap backward)
    )
    # a store of the teacher's outputs from tools/cache_teacher.py: train without the teacher in the loop
    _C.MODEL.DISTILL.TEACHER_CACHE = ""

    # VGG backbone (MODEL.BACKBONE.NAME "build_vgg_backbone"); the default is VGG-16.
    _C.MODEL.VGG = CN()
    _C.MODEL.VGG.STAGE_CHANNELS = [
        [64, 64],
        [128, 128],
        [256, 256, 256],
        [512, 512, 512],
        [512, 512, 512],
    ]
    _C.MODEL.VGG.NORM = ""  # "" as VGG-16, or "BN" to train a narrow VGG from scratch
    _C.MODEL.VGG.OUT_FEATURES = ["conv5"]  # stages returned (conv_i has stride 2**(i-1))

    # Optimizer of the Trainer: "SGD" (detectron2's, with SOLVER.MOMENTUM/NESTEROV) or "AdamW"
    # (with SOLVER.BASE_LR and SOLVER.WEIGHT_DECAY*; it trains small models from scratch faster).
    _C.SOLVER.OPTIMIZER = "SGD"

    # Multi-label evaluation (MultiLabelEvaluator).
    _C.TEST.MULTILABEL = CN()
    _C.TEST.MULTILABEL.SCORE_THRESHOLD = 0.5  # a label is predicted when its score >= this ("all")
    _C.TEST.MULTILABEL.TOP_K = 3  # labels kept per image for the "top-k" metrics
    # Weakly-supervised localization (WSODEvaluator), run when the test set has boxes.
    _C.TEST.WSOD = CN()
    _C.TEST.WSOD.ENABLED = True  # evaluate CorLoc and AP50 of "instances" outputs
    _C.TEST.WSOD.IOU_THRESHOLD = 0.5  # IoU for a correct localization / detection
    return cfg


def distill_roi_topk(cfg):
    """RoIs per image that L_f uses: ``MODEL.DISTILL.ROI_TOPK`` for ROI_SELECT "top", 0 (all) for "all"."""
    d = cfg.MODEL.DISTILL
    if d.ROI_SELECT not in ("all", "top"):
        raise ValueError(f"MODEL.DISTILL.ROI_SELECT must be 'all' or 'top', got {d.ROI_SELECT!r}")
    return d.ROI_TOPK if d.ROI_SELECT == "top" else 0


def get_teacher_cfg(cfg):
    """The teacher's config, read from ``MODEL.DISTILL.TEACHER_CONFIG`` (with wsd-distill's keys);
    its weights are ``MODEL.DISTILL.TEACHER_WEIGHTS`` and it runs on the student's device."""
    path = cfg.MODEL.DISTILL.TEACHER_CONFIG
    if not path:
        raise ValueError(
            "MODEL.DISTILL.ENABLED is on but MODEL.DISTILL.TEACHER_CONFIG is empty: name the teacher's config file"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.DISTILL.TEACHER_CONFIG: no such file '{path}'")
    teacher_cfg = add_wsd_distill_config(get_cfg())
    teacher_cfg.merge_from_file(path)
    teacher_cfg.MODEL.WEIGHTS = cfg.MODEL.DISTILL.TEACHER_WEIGHTS
    teacher_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    if teacher_cfg.MODEL.META_ARCHITECTURE != "WSDDN":
        raise ValueError(
            f"MODEL.DISTILL.TEACHER_CONFIG '{path}' is a {teacher_cfg.MODEL.META_ARCHITECTURE}, not a WSDDN"
        )
    teacher_cfg.freeze()
    return teacher_cfg
