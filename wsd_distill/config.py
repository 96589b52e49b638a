"""Config keys added by wsd-distill; every key has its default and a one-line comment."""

import math
import os

import yaml
from detectron2.config import CfgNode as CN
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY

from .utils.plain_files import check_yaml_size, named_text_errors


def add_wsd_distill_config(cfg) -> CN:
    """Add wsd-distill's keys to a detectron2 config (in place) and return it.

    Proposals reuse detectron2's own keys: ``MODEL.LOAD_PROPOSALS``,
    ``DATASETS.PROPOSAL_FILES_TRAIN/TEST``, ``DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN/TEST``
    and ``MODEL.PROPOSAL_GENERATOR.MIN_SIZE``; dropping images without labels, from training
    and evaluation alike, reuses ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (True by default).
    """
    _C = cfg

    # Datasets of your own, registered by setup_cfg (every tool) before anything else: a list of
    # [name, annotation_file, image_root] (a COCO json, boxes optional) or [name, label_list,
    # image_root, class_file] (a .csv/.tsv/.txt of "image,label;label"; class_file may be "");
    # e.g. DATASETS.REGISTER "[['mine_train', 'train.json', 'images']]"
    _C.DATASETS.REGISTER = []

    # "shortest_edge": detectron2's resize (INPUT.MIN_SIZE_*, aspect ratio kept, MAX_SIZE_*);
    # "square": each image warped to S x S, S drawn from INPUT.MIN_SIZE_TRAIN (the authors')
    _C.INPUT.RESIZE = "shortest_edge"
    # S > 0: each test image warped straight to S x S, whatever INPUT.RESIZE says (a student at
    # its MODEL.STUDENT.INPUT_SIZE: one resize, what a deployed student costs; docs/inference.md).
    # 0: INPUT.RESIZE to INPUT.MIN_SIZE_TEST, and a student resizes that tensor to its input
    # size, as in training and as the TEST phase of the authors' kd/train_stage2.prototxt
    # (672 x 672, then Interp to 224)
    _C.INPUT.SQUARE_SIZE_TEST = 0

    # Datasets of DATASETS.TRAIN whose labels are hidden: a KD student distils on their images
    # by L_p' and L_f alone (L_p masked per image); the teacher never trains on them. Unlabeled
    # images make at most UNLABELED_SHARE of the training stream: the labelled images are
    # repeated (whole copies) to make up the rest.
    _C.DATASETS.UNLABELED = ()
    _C.DATASETS.UNLABELED_SHARE = 0.5

    # The K class names, in the order of the model's outputs. Empty: setup_cfg takes those of
    # DATASETS.TRAIN[0], so that a run's config.yaml names its classes (and a NUM_CLASSES of 0
    # becomes their count); tools/predict.py then needs no registered dataset
    _C.MODEL.CLASS_NAMES = []

    # WSDDN teacher (T-WDet), MODEL.META_ARCHITECTURE "WSDDN".
    _C.MODEL.WSDDN = CN()
    # Its class count, map, RoI pooler and box head are detectron2's keys: MODEL.ROI_HEADS's
    # NUM_CLASSES (0: MODEL.CLASS_NAMES's count), IN_FEATURES (one map), SCORE_THRESH_TEST and
    # NMS_THRESH_TEST (its detections); MODEL.ROI_BOX_HEAD's POOLER_TYPE (any ROIPooler type, or
    # "BoxAverage": each bin's exact mean, what a student's "avg" pooling does for L_f),
    # POOLER_RESOLUTION, POOLER_SAMPLING_RATIO, NAME (FCBoxHead: fc6/fc7 FC_DIM wide, as VGG-16;
    # Res5BoxHead: ResNet's C4 stage; AveragePoolBoxHead: no new layer, for a pretrained map;
    # TimmC4BoxHead: a timm EfficientNet's layers after the map on each RoI), FC_DIM and DROPOUT.
    # multiply each pooled RoI by its proposal score (e.g. EdgeBoxes'), as the authors' RoI pooling
    _C.MODEL.WSDDN.SCALE_ROI_BY_PROPOSAL_SCORE = False
    _C.MODEL.WSDDN.MAX_PROPOSALS = 500  # proposals per image, best by objectness (authors: 500)
    # Images given without proposals (DefaultPredictor, tools/predict.py) are an error with
    # detectron2's MODEL.PROPOSAL_GENERATOR.NAME "PrecomputedProposals", or get the boxes of
    # "EdgeBoxesProposals" (on SED_MODEL's structured edges when set, as the paper),
    # "SelectiveSearchProposals" or "Detectron2Proposals" (a trained RPN or detector: its
    # detectron2 config, e.g. model zoo's COCO-Detection/rpn_R_50_FPN_1x.yaml, and weights, a
    # path or URL; it runs on MODEL.DEVICE)
    _C.MODEL.WSDDN.SED_MODEL = ""
    _C.MODEL.WSDDN.DETECTRON2_PROPOSER = CN()
    _C.MODEL.WSDDN.DETECTRON2_PROPOSER.CONFIG_FILE = ""
    _C.MODEL.WSDDN.DETECTRON2_PROPOSER.WEIGHTS = ""
    _C.MODEL.WSDDN.SCORE_EPS = 1e-6  # image scores are clamped into (eps, 1 - eps) for the BCE
    _C.MODEL.WSDDN.REFINE_ITERS = 0  # OICR instance refinement branches (0: plain WSDDN)
    _C.MODEL.WSDDN.REFINE_IOU = 0.5  # IoU with a pseudo-labelled top region to share its class
    # regions overlapping every pseudo box by IoU < this get weight 0 (pcl.pytorch: 0.1)
    _C.MODEL.WSDDN.REFINE_BG_IOU = 0.0
    # IoU with widths and heights + 1 pixel, as pcl.pytorch's and wetectron's (their numbers)
    _C.MODEL.WSDDN.REFINE_IOU_PLUS_ONE = False
    _C.MODEL.WSDDN.REFINE_FIRST_LOSS_WEIGHT = 1.0  # loss_refine_0's weight (pcl.pytorch: 3.0)

    # dropout after each fc of the box head: the teacher's, and the student's "fc" head (whose
    # pool5 is MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION square, fc6/fc7 FC_DIM wide: one FCBoxHead)
    _C.MODEL.ROI_BOX_HEAD.DROPOUT = 0.5

    # Student S-Cls, MODEL.META_ARCHITECTURE "StudentClassifier": backbone -> head -> linear.
    _C.MODEL.STUDENT = CN()
    _C.MODEL.STUDENT.NUM_CLASSES = 80  # the datasets' class count (0: MODEL.CLASS_NAMES's)
    _C.MODEL.STUDENT.IN_FEATURE = "res5"  # the backbone's last feature map, which the head pools
    _C.MODEL.STUDENT.INPUT_SIZE = 224  # each image is resized to this square (0: the loader's size)
    # "pool": global pooling -> linear; "fc": pooled to P x P -> fc6 -> fc7 -> linear (VGG-16;
    # MODEL.ROI_BOX_HEAD's sizes); "csra": class-specific residual attention on the map (Zhu &
    # Wu, ICCV 2021; beyond the paper): per class, a normalized 1x1 conv's scores, their mean
    # + 0.1 (the reference's lambda) * their max
    _C.MODEL.STUDENT.HEAD = "pool"
    # L_p: "bce" (the paper's) or "asl", the asymmetric loss (Ridnik et al., ICCV 2021; beyond
    # the paper) as the reference trains COCO (gamma- 4, gamma+ 0, clip 0.05, focal weights
    # without gradient), divided by the batch size as the BCE; kept for comparisons with the
    # multi-label literature, no gain measured here (docs/results.md)
    _C.MODEL.STUDENT.LABEL_LOSS = "bce"
    _C.MODEL.STUDENT.POOLING = "avg"  # "avg" or "max": the image's pooling, and its RoIs' for L_f

    # Distillation from a frozen teacher (TeacherHook + StudentClassifier), Liu et al. 2018.
    # The authors' two stages: 1) L_f alone (LABEL_WEIGHT 0, PREDICTION_WEIGHT 0); 2) L_p + L_p'
    # from stage 1's weights (FEATURE_WEIGHT 0). All three weights on: one joint stage.
    _C.MODEL.DISTILL = CN()
    _C.MODEL.DISTILL.ENABLED = False  # off: the "S-Cls w/o KD" baseline, no teacher is built
    _C.MODEL.DISTILL.TEACHER_CONFIG = ""  # the teacher's config file (a WSDDN)
    _C.MODEL.DISTILL.TEACHER_WEIGHTS = ""  # its trained weights
    _C.MODEL.DISTILL.TEACHER_FP16 = False  # run the teacher under fp16 autocast (CUDA only)
    # the teacher's dropout layers stay active, so its RoI features and p'_T are drawn with
    # dropout at every step, as the teacher branch of the authors' kd/train_stage1/2.prototxt
    # (drop6, drop7 in TRAIN phase); False: the teacher runs in eval mode. Not with TEACHER_CACHE
    _C.MODEL.DISTILL.TEACHER_DROPOUT = False
    _C.MODEL.DISTILL.TEACHER_FEATURE_DIM = 4096  # D of the teacher's RoI features (checked)
    _C.MODEL.DISTILL.LABEL_WEIGHT = 1.0  # weight of loss_cls, BCE with the labels (L_p)
    _C.MODEL.DISTILL.PREDICTION_WEIGHT = 1.0  # weight of loss_kd_pred (L_p', Eq. 10); 0: off
    _C.MODEL.DISTILL.FEATURE_WEIGHT = 1.0  # weight of loss_kd_feat (L_f, Eq. 3); 0: off
    # L_f as Eq. 3 (False: 1/(2N) sum of squared distances over the N RoIs), or also divided by
    # D (True: a mean over feature dimensions, so its scale does not grow with the teacher's width)
    _C.MODEL.DISTILL.FEATURE_LOSS_PER_DIM = False
    _C.MODEL.DISTILL.TEMPERATURE = 5.0  # t of the student's sigmoid(z / t) in L_p'
    # learn 1/t, one per class (initialised to 1 / TEMPERATURE, 10x the base lr, no decay), as
    # the Scale layer of the authors' stage 2
    _C.MODEL.DISTILL.LEARN_TEMPERATURE = False
    # L_p': "bce", Eq. 10, per class; "softmax" (beyond the paper): t^2 KL(q_T || softmax(z / t)),
    # q_T = p'_T normalized over the classes, blind to a per-image shift of the student's logits
    # (docs/results.md: a WSDDN under-scores the present classes of photos of many labels)
    _C.MODEL.DISTILL.PREDICTION_LOSS = "bce"
    # the teacher's temperature in p'_T, over classes and over regions alike (the paper's 0.5)
    _C.MODEL.DISTILL.TEACHER_TEMPERATURE = 0.5
    # the RoIs of L_f: 0 all the teacher's, k > 0 each image's k best by max_k S_rk
    _C.MODEL.DISTILL.ROI_TOPK = 0
    # multiply the student's pooled RoIs by their proposal scores, as the teacher's (authors: on)
    _C.MODEL.DISTILL.SCALE_ROI_BY_PROPOSAL_SCORE = False
    # a store of the teacher's outputs (tools/cache_teacher.py): train without the teacher
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

    # timm backbone (MODEL.BACKBONE.NAME "build_timm_backbone"): any timm model without its
    # classifier, e.g. ImageNet's EfficientNet-Lite0 (weights: MODEL.WEIGHTS, a file of
    # tools/convert_timm_weights.py). Its configs set INPUT.FORMAT "RGB" and MODEL.PIXEL_MEAN and
    # PIXEL_STD to [] (setup_cfg fills in the model's pretrained normalization)
    _C.MODEL.TIMM = CN()
    _C.MODEL.TIMM.NAME = "tf_efficientnet_lite0"  # the timm model
    # maps returned: "features" (forward_features, the last map) or "stage<i>" (timm's i-th)
    _C.MODEL.TIMM.OUT_FEATURES = ["features"]
    _C.MODEL.TIMM.NORM = "FrozenBN"  # BatchNorm: "FrozenBN" (as detectron2's ResNets) or "BN"

    # Bitwise-repeatable GPU training (CPU runs always are): cuDNN's deterministic algorithms and
    # torch.use_deterministic_algorithms (warn only). Slower; torchvision's RoIPool and ROIAlign
    # have no deterministic CUDA backward, so the teacher and students with
    # MODEL.STUDENT.POOLING "max" stay non-repeatable in their last digits (a warning says so).
    _C.DETERMINISTIC = False

    # Optimizer of the Trainer: "SGD" (detectron2's, with SOLVER.MOMENTUM/NESTEROV) or "AdamW"
    # (with SOLVER.BASE_LR and SOLVER.WEIGHT_DECAY*; it trains small models from scratch faster).
    _C.SOLVER.OPTIMIZER = "SGD"
    # lr factor of the layers a pretrained file does not hold (the student's classifier, the
    # teacher's two streams: the models' NEW_LAYERS), times SOLVER.BIAS_LR_FACTOR for their
    # biases: the authors' prototxts give fc8 lr_mult 10 (its bias 20)
    _C.SOLVER.NEW_LAYER_LR_FACTOR = 1.0
    return cfg


# Keys of earlier 0.x versions (CHANGELOG): where each went, named when met.
_MOVED = {
    "MODEL.WSDDN.NUM_CLASSES": "MODEL.ROI_HEADS.NUM_CLASSES",
    "MODEL.WSDDN.IN_FEATURE": "MODEL.ROI_HEADS.IN_FEATURES (a list)",
    "MODEL.WSDDN.SCORE_THRESH_TEST": "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "MODEL.WSDDN.NMS_THRESH_TEST": "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "MODEL.WSDDN.BOX_HEAD": "MODEL.ROI_BOX_HEAD.NAME (fc: FCBoxHead, res5: Res5BoxHead, "
    "pool: AveragePoolBoxHead, timm_c4: TimmC4BoxHead)",
    "MODEL.WSDDN.FC_DIM": "MODEL.ROI_BOX_HEAD.FC_DIM",
    "MODEL.WSDDN.POOLER_TYPE": "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
    "MODEL.WSDDN.POOLER_RESOLUTION": "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
    "MODEL.WSDDN.POOLER_SAMPLING_RATIO": "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
    "MODEL.WSDDN.DROPOUT": "MODEL.ROI_BOX_HEAD.DROPOUT",
    "MODEL.STUDENT.POOLER_RESOLUTION": "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
    "MODEL.STUDENT.FC_DIM": "MODEL.ROI_BOX_HEAD.FC_DIM",
    "MODEL.STUDENT.DROPOUT": "MODEL.ROI_BOX_HEAD.DROPOUT",
    "MODEL.WSDDN.PROPOSALS_AT_TEST": "MODEL.PROPOSAL_GENERATOR.NAME (precomputed: "
    "PrecomputedProposals, edge_boxes: EdgeBoxesProposals, selective_search: "
    "SelectiveSearchProposals, detectron2: Detectron2Proposals)",
}
_REMOVED = {
    "MODEL.STUDENT.CSRA_LAMBDA": "the csra head's lambda is the reference's 0.1",
    "MODEL.DISTILL.ROI_SELECT": "MODEL.DISTILL.ROI_TOPK alone says it: 0 all RoIs, k the best k",
    "MODEL.WSDDN.DETECTRON2_PROPOSER.OPTS": "write the detectron2 config you want as a file",
    **{
        key: "CorLoc and AP50 run whenever the test set has boxes (WSODEvaluator's "
        "iou_inclusive and ap_metric arguments: the IoU rule and VOC's AP)"
        for key in (
            "TEST.WSOD",
            "TEST.WSOD.ENABLED",
            "TEST.WSOD.IOU_INCLUSIVE",
            "TEST.WSOD.AP_METRIC",
        )
    },
}


def unknown_key_error(key, where):
    """The KeyError for a config key that does not exist, naming where a moved one went."""
    if key in _MOVED:
        return KeyError(f"{where}: no config key {key}: it is {_MOVED[key]} now (CHANGELOG)")
    removed = f": removed, {_REMOVED[key]} (CHANGELOG)" if key in _REMOVED else ""
    return KeyError(f"{where}: no config key {key}{removed}")


def merge_config_file(cfg, path):
    """``cfg.merge_from_file(path)`` reading plain YAML only, its ``_BASE_`` files too
    (detectron2's default would run what a ``!!python/object/apply`` tag names: a config file,
    a run folder's config.yaml, is what users send each other); a file that is not a YAML
    mapping of config keys is an error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No config file {path}")
    try:
        check_config_chain(path)
        cfg.merge_from_file(path, allow_unsafe=False)
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ValueError(
            f"{path} (or a _BASE_ of it) is not a plain YAML config ({first}); Python tags "
            f"are refused, nothing of it was run"
        ) from None
    except FileNotFoundError as e:  # (a _BASE_ named relative to a config copied elsewhere)
        raise FileNotFoundError(
            f"{path}: its _BASE_ {e.filename} does not exist (a _BASE_ is relative to the "
            "config's folder: copy the config's bases with it, or name them by absolute path)"
        ) from None
    except KeyError as e:  # (yacs: "Non-existent config key: X")
        key = str(e.args[0] if e.args else "").rpartition(": ")[2]
        raise unknown_key_error(key, path) from None
    except (AttributeError, TypeError) as e:  # (a file of YAML that is not a mapping)
        raise ValueError(
            f"{path} (or a _BASE_ of it) is not a YAML mapping of config keys ({e})"
        ) from None


def check_config_chain(path, chain=()):
    """Refuse a config file, or a ``_BASE_`` of it, that is not UTF-8 or is an alias bomb
    (``check_yaml_size``), or a ``_BASE_`` loop, naming the file; read as YAML nodes only (a
    Python tag builds nothing here, ``merge_from_file`` refuses it)."""
    with open(path, "rb") as f, named_text_errors(path):
        text = f.read().decode("utf-8-sig")
    node = check_yaml_size(text, path)
    pairs = node.value if isinstance(node, yaml.MappingNode) else []
    bases = [v for k, v in pairs if getattr(k, "value", None) == "_BASE_"]
    for base in (b.value for b in bases if isinstance(b, yaml.ScalarNode)):
        base = os.path.expanduser(base)
        base = os.path.join(os.path.dirname(path), base)  # (an absolute base stays itself)
        if os.path.realpath(base) in chain:
            raise ValueError(f"{path}: its _BASE_ {base} is a base of itself (a _BASE_ loop)")
        if os.path.isfile(base):  # (a missing one: merge_from_file names it)
            check_config_chain(base, (*chain, os.path.realpath(path)))


def _value(cfg, key):
    """The value of a dotted config key, e.g. "MODEL.DISTILL.TEMPERATURE"."""
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _check_wsddn_proposal_generator(name):
    """A WSDDN's MODEL.PROPOSAL_GENERATOR.NAME: none, or a registered generator it need not
    train (detectron2's RPNs learn from boxes, which a WSDDN never sees)."""
    names = sorted(n for n, _ in PROPOSAL_GENERATOR_REGISTRY if n not in ("RPN", "RRPN"))
    if name != "PrecomputedProposals" and name not in names:
        raise ValueError(
            f"MODEL.PROPOSAL_GENERATOR.NAME is {name!r}: a WSDDN takes 'PrecomputedProposals' "
            f"(each input's, DATASETS.PROPOSAL_FILES_*) or one of {names} (a trained RPN: "
            "'Detectron2Proposals')"
        )


def _check_number(cfg, key, low=None, high=None, low_open=False, high_open=False, integer=False):
    value = _value(cfg, key)
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (not integer or float(v).is_integer())
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            bounds = (
                f"{'(' if low_open else '['}{'-inf' if low is None else low}, "
                f"{'inf' if high is None else high}{')' if high_open or high is None else ']'}"
            )
            kind = "an integer" if integer else "a finite number"
            raise ValueError(f"{key} is {value!r}: expected {kind} in {bounds}")


def check_config(cfg) -> None:
    """Refuse wsd-distill settings that would train silently wrong or fail late: every number
    finite and in its range, every choice known. Each error names the key, its value and what
    is expected. Called by ``setup_cfg`` (every tool) and by ``Trainer``."""
    d, w, s = "MODEL.DISTILL.", "MODEL.WSDDN.", "MODEL.STUDENT."
    r, b = "MODEL.ROI_HEADS.", "MODEL.ROI_BOX_HEAD."
    for key in ("LABEL_WEIGHT", "PREDICTION_WEIGHT", "FEATURE_WEIGHT"):
        _check_number(cfg, d + key, low=0)
    for key in ("TEMPERATURE", "TEACHER_TEMPERATURE"):
        _check_number(cfg, d + key, low=0, low_open=True)
    _check_number(cfg, d + "ROI_TOPK", low=0, integer=True)
    _check_number(cfg, b + "DROPOUT", low=0, high=1, high_open=True)
    _check_number(cfg, w + "SCORE_EPS", low=0, high=0.5, low_open=True, high_open=True)
    for key in (b + "POOLER_RESOLUTION", b + "FC_DIM"):
        _check_number(cfg, key, low=1, integer=True)
    _check_number(cfg, w + "MAX_PROPOSALS", low=1, integer=True)
    _check_number(cfg, s + "INPUT_SIZE", low=0, integer=True)
    _check_number(cfg, "INPUT.SQUARE_SIZE_TEST", low=0, integer=True)
    _check_number(cfg, "SOLVER.NEW_LAYER_LR_FACTOR", low=0, low_open=True)
    for key in ("SOLVER.MAX_ITER", "SOLVER.CHECKPOINT_PERIOD"):
        _check_number(cfg, key, low=1, integer=True)
    _check_number(cfg, "SOLVER.BASE_LR", low=0)
    for key in ("TEST.EVAL_PERIOD", "DATALOADER.NUM_WORKERS"):
        _check_number(cfg, key, low=0, integer=True)
    for key in (r + "NUM_CLASSES", s + "NUM_CLASSES"):  # (0 is resolved by setup_cfg)
        _check_number(cfg, key, low=1, integer=True)
    _check_number(cfg, w + "REFINE_ITERS", low=0, integer=True)
    _check_number(cfg, w + "REFINE_IOU", low=0, high=1, low_open=True)
    _check_number(cfg, w + "REFINE_BG_IOU", low=0, high=1, high_open=True)
    _check_number(cfg, w + "REFINE_FIRST_LOSS_WEIGHT", low=0)
    _check_number(cfg, r + "SCORE_THRESH_TEST", low=0, high=1, high_open=True)
    _check_number(cfg, r + "NMS_THRESH_TEST", low=0, high=1, low_open=True)
    if cfg.MODEL.LOAD_PROPOSALS:
        for key in ("PRECOMPUTED_PROPOSAL_TOPK_TRAIN", "PRECOMPUTED_PROPOSAL_TOPK_TEST"):
            _check_number(cfg, "DATASETS." + key, low=1, integer=True)
    for key, choices in (
        (d + "PREDICTION_LOSS", ("bce", "softmax")),
        (s + "HEAD", ("pool", "fc", "csra")),
        (s + "LABEL_LOSS", ("bce", "asl")),
        (s + "POOLING", ("avg", "max")),
        ("MODEL.TIMM.NORM", ("FrozenBN", "BN")),
        ("INPUT.RESIZE", ("shortest_edge", "square")),
        ("INPUT.CROP.TYPE", ("relative_range", "relative", "absolute_range", "absolute")),
        ("SOLVER.OPTIMIZER", ("SGD", "AdamW")),
    ):
        value = _value(cfg, key)
        if value not in choices:
            raise ValueError(f"{key} is {value!r}: expected one of {list(choices)}")
    if cfg.INPUT.RESIZE == "square" and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING != "choice":
        raise ValueError(
            "INPUT.RESIZE 'square' draws each side from INPUT.MIN_SIZE_TRAIN: set "
            f"INPUT.MIN_SIZE_TRAIN_SAMPLING 'choice' (it is {cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING!r})"
        )
    if cfg.INPUT.CROP.ENABLED:  # (detectron2's RandomCrop would fail at the first image)
        relative = cfg.INPUT.CROP.TYPE.startswith("relative")
        if len(cfg.INPUT.CROP.SIZE) != 2:
            raise ValueError(
                f"INPUT.CROP.SIZE is {cfg.INPUT.CROP.SIZE!r}: expected two numbers (height, width)"
            )
        _check_number(
            cfg,
            "INPUT.CROP.SIZE",
            low=0,
            high=1 if relative else None,
            low_open=True,
            integer=not relative,
        )
    generator = cfg.MODEL.PROPOSAL_GENERATOR.NAME
    if cfg.MODEL.META_ARCHITECTURE == "WSDDN":
        _check_wsddn_proposal_generator(generator)
    d2 = cfg.MODEL.WSDDN.DETECTRON2_PROPOSER
    if generator == "Detectron2Proposals" and not (d2.CONFIG_FILE and d2.WEIGHTS):
        raise ValueError(
            "MODEL.PROPOSAL_GENERATOR.NAME 'Detectron2Proposals' needs "
            "MODEL.WSDDN.DETECTRON2_PROPOSER.CONFIG_FILE and .WEIGHTS (an RPN or detector), got "
            f"{d2.CONFIG_FILE!r} and {d2.WEIGHTS!r}"
        )
    sed = cfg.MODEL.WSDDN.SED_MODEL
    if sed and generator == "EdgeBoxesProposals" and not os.path.isfile(sed):
        raise FileNotFoundError(
            f"MODEL.WSDDN.SED_MODEL {sed!r} is not a file: the structured-edge forest "
            "(opencv_extra's ximgproc model.yml.gz), or '' for OpenCV's own edges"
        )
    weights = [
        cfg.MODEL.DISTILL[k] for k in ("LABEL_WEIGHT", "PREDICTION_WEIGHT", "FEATURE_WEIGHT")
    ]
    if cfg.MODEL.DISTILL.ENABLED and max(weights) == 0:
        raise ValueError(
            "MODEL.DISTILL.LABEL_WEIGHT, PREDICTION_WEIGHT and FEATURE_WEIGHT are all 0: the "
            "student would learn nothing (one must be > 0)"
        )
    if cfg.MODEL.DISTILL.PREDICTION_LOSS == "softmax" and cfg.MODEL.DISTILL.LEARN_TEMPERATURE:
        raise ValueError(
            "MODEL.DISTILL.LEARN_TEMPERATURE learns one t per class, but PREDICTION_LOSS "
            "'softmax' has one t for all classes: set one of them off"
        )
    _check_number(cfg, "DATASETS.UNLABELED_SHARE", low=0, high=1, low_open=True, high_open=True)
    unlabeled = list(cfg.DATASETS.UNLABELED)
    if unlabeled and not set(unlabeled) <= set(cfg.DATASETS.TRAIN):
        raise ValueError(
            f"DATASETS.UNLABELED {unlabeled}: each must be one of DATASETS.TRAIN "
            f"{list(cfg.DATASETS.TRAIN)} (the training sets whose labels are hidden)"
        )
    if unlabeled and not cfg.MODEL.DISTILL.ENABLED:
        raise ValueError(
            f"DATASETS.UNLABELED {unlabeled}: only a student distilling from a teacher "
            "(MODEL.DISTILL.ENABLED) learns from images without labels"
        )
    if cfg.MODEL.DISTILL.ENABLED and not cfg.MODEL.DISTILL.TEACHER_WEIGHTS:
        raise ValueError(
            "MODEL.DISTILL.TEACHER_WEIGHTS is empty: distillation needs the trained teacher's "
            "weights (its model_final.pth), online and to check a teacher cache"
        )
