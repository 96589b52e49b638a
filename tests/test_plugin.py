"""wsd-distill's parts inside a user's own detectron2 code: detectron2's DefaultTrainer and
inference_on_dataset, no train_net.py and no wsd_distill Trainer (the README shows the same)."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import inference_on_dataset
from sklearn.metrics import average_precision_score

import wsd_distill  # noqa: F401  (registers the datasets and models)
from wsd_distill.data import MultiLabelDatasetMapper, get_multilabel_dataset_dicts
from wsd_distill.engine import TeacherHook
from wsd_distill.evaluation import MultiLabelEvaluator

from conftest import synthetic_cfg


class MyTrainer(DefaultTrainer):  # a user's trainer: only the data loader is wsd_distill's
    @classmethod
    def build_train_loader(cls, cfg):
        dicts = get_multilabel_dataset_dicts(
            cfg.DATASETS.TRAIN, proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN
        )
        return build_detection_train_loader(
            cfg, mapper=MultiLabelDatasetMapper(cfg, True), dataset=dicts
        )


def config(name, output_dir, proposals, *opts):
    """``name`` of configs/Synthetic on the tiny set, 4 steps, into ``output_dir``."""
    return synthetic_cfg(
        name,
        *("OUTPUT_DIR", output_dir, "DATALOADER.NUM_WORKERS", 0, "DATASETS.TEST", ()),
        *("DATASETS.TRAIN", ("tiny_shapes_train",)),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (proposals["train"],)),
        *("SOLVER.MAX_ITER", 4, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 0, *opts),
    )


def test_teacher_and_kd_student_with_detectron2s_own_trainer(
    datasets_dir, tiny_proposals, tmp_path
):
    teacher_cfg = config(
        "T-WDet.yaml", str(tmp_path / "teacher"), tiny_proposals, "MODEL.WSDDN.MAX_PROPOSALS", 32
    )
    teacher = MyTrainer(teacher_cfg)
    teacher.train()
    (tmp_path / "teacher.yaml").write_text(teacher_cfg.dump())

    cfg = config(
        "S-Cls_KD.yaml",
        str(tmp_path / "student"),
        tiny_proposals,
        "MODEL.DISTILL.TEACHER_CONFIG",
        str(tmp_path / "teacher.yaml"),
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        str(tmp_path / "teacher" / "model_final.pth"),
    )
    trainer = MyTrainer(cfg)
    trainer.register_hooks([TeacherHook(cfg)])
    trainer.train()
    history = trainer.storage.histories()
    for name in ("loss_cls", "loss_kd_pred", "loss_kd_feat", "teacher_time"):
        assert name in history and len(history[name].values()) == 4, name

    student = MyTrainer.build_model(cfg)
    DetectionCheckpointer(student).load(str(tmp_path / "student" / "model_final.pth"))
    mapper = MultiLabelDatasetMapper(
        cfg, False, dataset_name="tiny_shapes_test", load_proposals=False
    )
    loader = build_detection_test_loader(
        get_multilabel_dataset_dicts(["tiny_shapes_test"], filter_unlabeled=False), mapper=mapper
    )
    results = inference_on_dataset(student, loader, MultiLabelEvaluator("tiny_shapes_test"))
    # the same mAP from the model's own logits (what the evaluator ranks: float32 sigmoids of
    # large logits tie) and scikit-learn
    student.eval()
    with torch.no_grad():
        scores = torch.cat([torch.stack([o["image_logits"] for o in student(b)]) for b in loader])
    labels = torch.stack([x["multi_labels"] for b in loader for x in b]).numpy()
    present = labels.sum(0) > 0
    expected = average_precision_score(labels[:, present], scores.numpy()[:, present], average=None)
    assert results["multilabel"]["mAP"] == pytest.approx(100 * expected.mean(), abs=1e-4)
