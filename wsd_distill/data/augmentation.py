"""The training and test augmentations: detectron2's, with the authors' square warp as an option."""

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T


def resize_augmentation(cfg, sizes, is_train):
    """The resize of ``INPUT.RESIZE``: detectron2's ``ResizeShortestEdge`` to one of ``sizes``
    (aspect ratio kept, longer side at most ``INPUT.MAX_SIZE_TRAIN/TEST``), or "square": the
    image warped to S x S, S one of ``sizes`` (the authors' input, 672 for the teacher)."""
    if cfg.INPUT.RESIZE == "square":
        return T.RandomResize([(s, s) for s in sizes])
    max_size = cfg.INPUT.MAX_SIZE_TRAIN if is_train else cfg.INPUT.MAX_SIZE_TEST
    sampling = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING if is_train else "choice"
    return T.ResizeShortestEdge(sizes, max_size, sampling)


def build_augmentation(cfg, is_train):
    """detectron2's ``build_augmentation`` (resize, then the random flip in training), with
    the resize of ``INPUT.RESIZE``, after ``INPUT.CROP`` in training where it is enabled, as
    detectron2's ``DatasetMapper`` crops (random views, Beyer et al. 2022; the proposals are
    cropped too, the labels kept); at test, ``INPUT.SQUARE_SIZE_TEST`` S > 0 warps each image
    straight to S x S."""
    if not is_train and cfg.INPUT.SQUARE_SIZE_TEST:
        side = cfg.INPUT.SQUARE_SIZE_TEST
        return [T.Resize((side, side))]
    augmentations = utils.build_augmentation(cfg, is_train)
    sizes = cfg.INPUT.MIN_SIZE_TRAIN if is_train else (cfg.INPUT.MIN_SIZE_TEST,)
    augmentations[0] = resize_augmentation(cfg, sizes, is_train)
    if is_train and cfg.INPUT.CROP.ENABLED:
        augmentations.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    return augmentations
