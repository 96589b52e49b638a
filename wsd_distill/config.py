"""Config keys added by wsd-distill; every key has its default and a one-line comment."""
from detectron2.config import CfgNode as CN


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
    _C.DATASETS.SYNTHETIC.NUM_TRAIN = 2000  # images in synthetic_shapes_train
    _C.DATASETS.SYNTHETIC.NUM_VAL = 400  # images in synthetic_shapes_val
    _C.DATASETS.SYNTHETIC.NUM_TEST = 1000  # images in synthetic_shapes_test
    _C.DATASETS.SYNTHETIC.IMAGE_SIZE = 256  # side of the square images, in pixels
    _C.DATASETS.SYNTHETIC.SEED = 0  # generator seed: same seed and sizes, same bytes

    # Multi-label evaluation (MultiLabelEvaluator).
    _C.TEST.MULTILABEL = CN()
    _C.TEST.MULTILABEL.SCORE_THRESHOLD = 0.5  # a label is predicted when its score >= this ("all")
    _C.TEST.MULTILABEL.TOP_K = 3  # labels kept per image for the "top-k" metrics
    return cfg
