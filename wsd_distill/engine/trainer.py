"""Trainer: detectron2's DefaultTrainer with multi-label data loading and evaluation."""

import logging
import os
import weakref
from unittest import mock

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, PeriodicCheckpointer, create_ddp_model
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import DatasetEvaluators
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import FiniteCheckpointer, RNGStateHook, load_trained_weights
from ..config import check_config
from ..data import MultiLabelDatasetMapper, get_multilabel_dataset_dicts
from ..data.build import check_dataset_dicts, training_dataset_dicts, with_unlabeled_share
from ..data.proposals import check_proposal_file
from ..data.resumable_loader import build_resumable_train_loader
from ..data.teacher_cache import open_teacher_cache
from ..data.teacher_targets import used_fields
from ..evaluation import MultiLabelEvaluator, WSODEvaluator
from ..modeling import WSDDN
from ..modeling.class_count import check_class_order
from ..modeling.wsddn_tta import WSDDNWithTTA
from .progress_hook import ProgressHook
from .teacher_hook import TeacherHook


def test_proposal_files(cfg, dataset_name):
    """The proposal file of ``dataset_name`` in ``DATASETS.PROPOSAL_FILES_TEST``; None when the
    config names none (a student never needs them at test time, only its teacher does)."""
    if not cfg.MODEL.LOAD_PROPOSALS or not cfg.DATASETS.PROPOSAL_FILES_TEST:
        return None
    if dataset_name not in cfg.DATASETS.TEST:
        raise KeyError(
            f"'{dataset_name}' is not in DATASETS.TEST, so DATASETS.PROPOSAL_FILES_TEST has no "
            f"file for it"
        )
    if len(cfg.DATASETS.PROPOSAL_FILES_TEST) != len(cfg.DATASETS.TEST):
        raise ValueError(
            f"DATASETS.PROPOSAL_FILES_TEST names {len(cfg.DATASETS.PROPOSAL_FILES_TEST)} files "
            f"for the {len(cfg.DATASETS.TEST)} datasets of DATASETS.TEST: one per dataset"
        )
    return [cfg.DATASETS.PROPOSAL_FILES_TEST[list(cfg.DATASETS.TEST).index(dataset_name)]]


def create_ddp_model_on_any_device(model, **kwargs):
    """detectron2's ``create_ddp_model`` (a no-op on one process), also for CPU processes (GLOO),
    where DDP takes no ``device_ids``. Every parameter takes part in every step (the student
    builds only the branches its loss weights use), so ``find_unused_parameters`` stays off."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    kwargs.setdefault("device_ids", [comm.get_local_rank()] if on_cuda else None)
    return create_ddp_model(model, **kwargs)


def unwrap(model):
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def use_deterministic_algorithms():
    """``DETERMINISTIC``: the same seed gives the same numbers on a GPU too, for every op with a
    deterministic CUDA kernel (others warn). Set for the whole process."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)


class Trainer(DefaultTrainer):
    """Feeds ``MultiLabelDatasetMapper`` outputs to the model and evaluates with
    ``MultiLabelEvaluator`` (and, for a WSDDN on a dataset with boxes, ``WSODEvaluator``);
    proposals are loaded when ``MODEL.LOAD_PROPOSALS`` is on."""

    def __init__(self, cfg):
        check_config(cfg)  # (setup_cfg checks too; a cfg built by hand is checked here)
        if cfg.SEED >= 0:  # each run starts from its seed's state, whatever ran before it
            seed_all_rng(cfg.SEED + comm.get_rank())
        if cfg.DETERMINISTIC:
            use_deterministic_algorithms()
        for name in cfg.DATASETS.TEST:  # found now rather than after the training schedule
            check_dataset_dicts(name, DatasetCatalog.get(name))
            for proposal_file in test_proposal_files(cfg, name) or ():
                check_proposal_file(proposal_file)
        # detectron2's create_ddp_model gives DDP device_ids on CPU processes (GLOO) too, which
        # DDP refuses: DefaultTrainer's one call of it makes the model of every device's
        with mock.patch.object(d2_defaults, "create_ddp_model", create_ddp_model_on_any_device):
            super().__init__(cfg)

    def build_hooks(self):
        # DefaultTrainer's checkpointer as a FiniteCheckpointer, before its hooks take it
        self.checkpointer = FiniteCheckpointer(
            self.checkpointer.model,
            self.cfg.OUTPUT_DIR,
            class_names=self.cfg.MODEL.CLASS_NAMES,
            trainer=weakref.proxy(self),
        )
        hooks = super().build_hooks()
        if self.cfg.MODEL.DISTILL.ENABLED and not self.cfg.MODEL.DISTILL.TEACHER_CACHE:
            # (with a cache, the mapper reads the teacher's targets from it)
            hooks.insert(0, TeacherHook(self.cfg))
        # before the PeriodicCheckpointer (rank 0's), which saves the states it gathered in the
        # same step
        checkpointers = [i for i, h in enumerate(hooks) if isinstance(h, PeriodicCheckpointer)]
        at = checkpointers[0] if checkpointers else len(hooks)
        hooks.insert(at, RNGStateHook(self.cfg.SOLVER.CHECKPOINT_PERIOD))
        if comm.is_main_process():
            hooks.append(ProgressHook())
        return hooks

    def resume_or_load(self, resume=True):
        """DefaultTrainer's; on resume the data loader continues the interrupted run's stream,
        and a finished run's unreadable model_final.pth is written again. A second stage of KD
        (L_f off, MODEL.WEIGHTS set) loads its starting weights strictly."""
        d = self.cfg.MODEL.DISTILL
        second_stage = d.ENABLED and d.FEATURE_WEIGHT == 0 and self.cfg.MODEL.WEIGHTS
        if second_stage and not (resume and self.checkpointer.has_checkpoint()):
            # the authors' stage 2 starts from stage 1's whole student: a teacher's or another
            # model's weights would leave layers at their random initialisation
            load_trained_weights(
                self.checkpointer.model,
                self.cfg.MODEL.WEIGHTS,
                "MODEL.WEIGHTS (stage 2 starts from stage 1's student)",
                may_miss=("inverse_temperature",),  # MODEL.DISTILL.LEARN_TEMPERATURE's
            )
            self.start_iter = 0
        else:
            super().resume_or_load(resume)
        self._trainer.data_loader.start_iter = self.start_iter
        if 0 < self.start_iter < self.max_iter and self.cfg.DATALOADER.ASPECT_RATIO_GROUPING:
            logging.getLogger(__name__).warning(
                "Resumed with DATALOADER.ASPECT_RATIO_GROUPING: the first batches after the "
                "resume can differ from an uninterrupted run's (images of both orientations)"
            )
        if resume and self.start_iter >= self.max_iter and comm.is_main_process():
            self.checkpointer.ensure_final(self.start_iter - 1)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer's, but a student trained on L_f alone (the authors' stage 1:
        LABEL_WEIGHT and PREDICTION_WEIGHT 0) has an untrained classifier: it is not evaluated
        (a log line says so; the results are {})."""
        d = cfg.MODEL.DISTILL
        if d.ENABLED and d.LABEL_WEIGHT == 0 and d.PREDICTION_WEIGHT == 0:
            logging.getLogger(__name__).info(
                "Not evaluated: L_f alone (the authors' stage 1) trains no classifier; "
                "stage 2 (MODEL.WEIGHTS: this run's folder) is the student to evaluate"
            )
            return {}
        return super().test(cfg, model, evaluators)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """As detectron2's projects: the teacher evaluated with ``TEST.AUG``
        (:class:`WSDDNWithTTA`), its results named "<evaluation>_TTA"."""
        if not isinstance(unwrap(model), WSDDN):
            raise ValueError(
                f"TEST.AUG.ENABLED: test-time augmentation is for the teacher (a WSDDN), not a "
                f"{cfg.MODEL.META_ARCHITECTURE}"
            )
        results = cls.test(cfg, WSDDNWithTTA(cfg, unwrap(model)))
        return {f"{name}_TTA": value for name, value in results.items()}

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's SGD (``SOLVER.OPTIMIZER`` "SGD") or AdamW; a learned 1 / t of L_p'
        (``MODEL.DISTILL.LEARN_TEMPERATURE``) takes 10x the base lr and no weight decay, as the
        Scale layer of the authors' stage 2; the model's new layers (``NEW_LAYERS``) take
        ``SOLVER.NEW_LAYER_LR_FACTOR`` times their group's lr."""
        solver = cfg.SOLVER
        params = get_default_optimizer_params(
            model,
            base_lr=solver.BASE_LR,
            weight_decay_norm=solver.WEIGHT_DECAY_NORM,
            bias_lr_factor=solver.BIAS_LR_FACTOR,
            weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
            overrides={"inverse_temperature": {"lr": 10 * solver.BASE_LR, "weight_decay": 0.0}},
        )
        params = scale_new_layer_lr(params, unwrap(model), solver.NEW_LAYER_LR_FACTOR)
        if solver.OPTIMIZER == "SGD":
            optimizer = torch.optim.SGD(
                params,
                lr=solver.BASE_LR,
                momentum=solver.MOMENTUM,
                nesterov=solver.NESTEROV,
                weight_decay=solver.WEIGHT_DECAY,
            )
        else:  # "AdamW"
            optimizer = torch.optim.AdamW(
                params, lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY
            )
        return maybe_add_gradient_clipping(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        """A ``ResumableTrainLoader``, seeded by ``cfg.SEED`` unless it is negative."""
        # e.g. RepeatFactorTrainingSampler counts boxes, not labels
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            raise ValueError(
                f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r} is not supported: "
                f"wsd_distill's resumable training loader draws detectron2's TrainingSampler "
                f"stream (set 'TrainingSampler')"
            )
        batch, processes = cfg.SOLVER.IMS_PER_BATCH, comm.get_world_size()
        if batch <= 0 or batch % processes:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH is {batch}: it must be a positive multiple of the number "
                f"of processes ({processes}), the images of one step over all of them"
            )
        dicts = training_dataset_dicts(cfg)
        cache = (
            open_teacher_cache(cfg, dicts)
            if cfg.MODEL.DISTILL.ENABLED and cfg.MODEL.DISTILL.TEACHER_CACHE
            else None
        )
        mapper = MultiLabelDatasetMapper(
            cfg, True, teacher_cache=cache, teacher_cache_fields=used_fields(cfg)
        )
        return build_resumable_train_loader(
            with_unlabeled_share(dicts, cfg.DATASETS.UNLABELED_SHARE),
            mapper,
            seed=cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed(),
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        proposal_files = test_proposal_files(cfg, dataset_name)
        dicts = get_multilabel_dataset_dicts(
            [dataset_name],
            filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,  # as for training
            proposal_files=proposal_files,
        )
        mapper = MultiLabelDatasetMapper(
            cfg, False, dataset_name=dataset_name, load_proposals=proposal_files is not None
        )
        return build_detection_test_loader(
            dicts, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        check_class_order(cfg.MODEL.CLASS_NAMES, dataset_name)  # the model's, in order
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "multilabel")
        if evaluator_type != "multilabel":
            raise NotImplementedError(
                f"No evaluator for '{dataset_name}' of type {evaluator_type!r}"
            )
        evaluators = [MultiLabelEvaluator(dataset_name, output_dir=output_folder)]
        has_boxes = MetadataCatalog.get(dataset_name).get("has_boxes", False)
        if has_boxes:  # CorLoc and AP50 (it skips outputs without "instances")
            evaluators.append(WSODEvaluator(dataset_name))
        return DatasetEvaluators(evaluators)


def scale_new_layer_lr(param_groups, model, factor):
    """The optimizer's ``param_groups`` with the parameters of ``model``'s new layers (the
    modules named by its ``NEW_LAYERS``, those no pretrained file holds) in groups of their
    own at ``factor`` times the lr, as the authors' lr_mult 10 on fc8 (20 for its bias with
    SOLVER.BIAS_LR_FACTOR 2)."""
    if factor == 1:
        return param_groups
    layers = [getattr(model, name) for name in getattr(model, "NEW_LAYERS", ())]
    new = {id(p) for layer in layers if layer is not None for p in layer.parameters()}
    groups = []
    for group in param_groups:
        for is_new in (False, True):
            params = [p for p in group["params"] if (id(p) in new) == is_new]
            if params:
                lr = group["lr"] * (factor if is_new else 1.0)
                groups.append({**group, "params": params, "lr": lr})
    return groups
