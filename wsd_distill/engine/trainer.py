"""Trainer: detectron2's DefaultTrainer with multi-label data loading and evaluation."""
import os

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluators

from ..data import MultiLabelDatasetMapper, get_multilabel_dataset_dicts, num_classes_of
from ..evaluation import MultiLabelEvaluator, WSODEvaluator


def test_proposal_files(cfg, dataset_name):
    """The proposal file of ``dataset_name`` in ``DATASETS.PROPOSAL_FILES_TEST`` (None without proposals)."""
    if not cfg.MODEL.LOAD_PROPOSALS:
        return None
    if dataset_name not in cfg.DATASETS.TEST:
        raise KeyError(f"'{dataset_name}' is not in DATASETS.TEST, so DATASETS.PROPOSAL_FILES_TEST has no file for it")
    return [cfg.DATASETS.PROPOSAL_FILES_TEST[list(cfg.DATASETS.TEST).index(dataset_name)]]


def check_class_count(cfg):
    """The model's class count (``MODEL.WSDDN.NUM_CLASSES``) must match every dataset's."""
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        if num_classes_of(name) != cfg.MODEL.WSDDN.NUM_CLASSES:
            raise ValueError(
                f"Dataset '{name}' has {num_classes_of(name)} classes but MODEL.WSDDN.NUM_CLASSES is "
                f"{cfg.MODEL.WSDDN.NUM_CLASSES}"
            )


class Trainer(DefaultTrainer):
    """Feeds ``MultiLabelDatasetMapper`` outputs to the model and evaluates with
    ``MultiLabelEvaluator`` (and, for a WSDDN on a dataset with boxes, ``WSODEvaluator``);
    proposals are loaded when ``MODEL.LOAD_PROPOSALS`` is on."""

    @classmethod
    def build_model(cls, cfg):  # also what DefaultTrainer.__init__ builds the model with
        check_class_count(cfg)
        return super().build_model(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        dicts = get_multilabel_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        return build_detection_train_loader(cfg, mapper=MultiLabelDatasetMapper(cfg, True), dataset=dicts)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        dicts = get_multilabel_dataset_dicts(
            [dataset_name], filter_unlabeled=False, proposal_files=test_proposal_files(cfg, dataset_name)
        )
        mapper = MultiLabelDatasetMapper(cfg, False, dataset_name=dataset_name)
        return build_detection_test_loader(dicts, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "multilabel")
        if evaluator_type != "multilabel":
            raise NotImplementedError(f"No evaluator for '{dataset_name}' of type {evaluator_type!r}")
        evaluators = [
            MultiLabelEvaluator(
                dataset_name, output_dir=output_folder,
                score_threshold=cfg.TEST.MULTILABEL.SCORE_THRESHOLD, top_k=cfg.TEST.MULTILABEL.TOP_K,
            )
        ]  # fmt: skip
        has_boxes = MetadataCatalog.get(dataset_name).get("has_boxes", False)
        if cfg.TEST.WSOD.ENABLED and has_boxes and cfg.MODEL.META_ARCHITECTURE == "WSDDN":
            evaluators.append(WSODEvaluator(dataset_name, iou_threshold=cfg.TEST.WSOD.IOU_THRESHOLD))
        return DatasetEvaluators(evaluators)
