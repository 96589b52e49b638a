"""On a GPU: the teacher, the student's losses and the RoI pooling agree with the CPU, and the
trainer runs online KD with AMP and the fp16 teacher. Marked ``cuda`` and skipped without a
CUDA device; ``make gpu-check`` runs them with the benchmark at the paper's sizes."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from wsd_distill.data.proposals import save_proposals
from wsd_distill.engine import TeacherHook
from wsd_distill.modeling import box_average_pool
from wsd_distill.modeling.teacher import build_teacher

from conftest import (
    IN_PROCESS,
    make_input,
    synthetic_cfg,
    tiny_cfg,
    tiny_student_cfg,
    train,
    train_net_command,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def on(device, batch):
    """A copy of mapper dicts with their tensors on ``device``."""
    moved = []
    for x in batch:
        x = dict(x)
        x["image"], x["proposals"] = x["image"].to(device), x["proposals"].to(device)
        if "teacher" in x:
            x["teacher"] = {k: v.to(device) for k, v in x["teacher"].items()}
        moved.append(x)
    return moved


def cpu_and_cuda(cfg):
    """The model of ``cfg`` on the CPU and an exact copy of it on the GPU."""
    cfg = cfg.clone()
    torch.manual_seed(0)
    cpu = build_model(cfg)
    cfg.MODEL.DEVICE = "cuda"
    gpu = build_model(cfg)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


def assert_same_gradients(cpu, gpu, atol):
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(b.grad.cpu(), a.grad, atol=atol, rtol=1e-3, msg=name)


def test_box_average_pool_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 16, generator=g)
    xy = torch.rand(2, 30, 2, generator=g) * 100
    boxes = [Boxes(torch.cat([b, b + 4 + torch.rand(30, 2, generator=g) * 60], 1)) for b in xy]
    outputs = []
    for device in ("cpu", "cuda"):
        feature = x.to(device).detach().requires_grad_()
        pooled = box_average_pool(feature, [b.to(device) for b in boxes], 1 / 8, 3)
        (pooled * torch.arange(pooled.numel(), device=device).view_as(pooled)).sum().backward()
        outputs.append((pooled.cpu(), feature.grad.cpu()))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_student_kd_losses_and_gradients_on_cuda_equal_cpu(tiny_teacher, pooling):
    """All three losses (RoIs scaled by their scores, as the paper's configs), from the teacher's
    targets computed on each device: the same values and gradients."""
    cfg = tiny_student_cfg(
        *tiny_teacher,
        PREDICTION_WEIGHT=1.0,
        FEATURE_WEIGHT=1.0,
        SCALE_ROI_BY_PROPOSAL_SCORE=True,
    )
    cfg.MODEL.STUDENT.POOLING, cfg.MODEL.ROI_BOX_HEAD.DROPOUT = pooling, 0.0
    cpu, gpu = cpu_and_cuda(cfg)
    batch = [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
    losses = {}
    for device, model in (("cpu", cpu), ("cuda", gpu)):
        model_cfg = cfg.clone()
        model_cfg.MODEL.DEVICE = device
        annotated = TeacherHook(model_cfg, teacher=build_teacher(model_cfg)).annotate(
            on(device, batch)
        )
        losses[device] = model(annotated)
        sum(losses[device].values()).backward()
    assert set(losses["cpu"]) == {"loss_cls", "loss_kd_pred", "loss_kd_feat"}
    for name, value in losses["cpu"].items():
        torch.testing.assert_close(losses["cuda"][name].cpu(), value, rtol=1e-4, atol=1e-5)
    assert_same_gradients(cpu, gpu, atol=1e-4)


def test_teacher_targets_on_cuda_equal_cpu_in_fp32_and_close_in_fp16(tiny_teacher):
    cfg = tiny_student_cfg(*tiny_teacher, PREDICTION_WEIGHT=1.0, FEATURE_WEIGHT=1.0)
    batch = [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
    targets = {}
    for device, fp16 in (("cpu", False), ("cuda", False), ("cuda", True)):
        device_cfg = cfg.clone()
        device_cfg.MODEL.DEVICE = device
        device_cfg.MODEL.DISTILL.TEACHER_FP16 = fp16
        annotated = TeacherHook(device_cfg, teacher=build_teacher(device_cfg)).annotate(
            on(device, batch)
        )
        targets[device, fp16] = [{k: v.cpu() for k, v in x["teacher"].items()} for x in annotated]
    for tolerance, key in ((1e-4, ("cuda", False)), (2e-2, ("cuda", True))):
        for ours, reference in zip(targets[key], targets["cpu", False]):
            assert all(v.dtype == torch.float32 for v in ours.values())
            for field, value in reference.items():
                torch.testing.assert_close(
                    ours[field], value, atol=tolerance, rtol=tolerance, msg=f"{key} {field}"
                )


def test_wsddn_loss_and_gradients_on_cuda_equal_cpu():
    cfg = tiny_cfg()
    cfg.MODEL.ROI_BOX_HEAD.DROPOUT = 0.0
    cpu, gpu = cpu_and_cuda(cfg)
    batch = [make_input(7, seed=0), make_input(3, size=(80, 64), labels=(0,), seed=1)]
    losses = [model(on(device, batch)) for device, model in (("cpu", cpu), ("cuda", gpu))]
    torch.testing.assert_close(
        losses[1]["loss_wsddn"].cpu(), losses[0]["loss_wsddn"], rtol=1e-4, atol=1e-5
    )
    for model, loss in zip((cpu, gpu), losses):
        loss["loss_wsddn"].backward()
    assert_same_gradients(cpu, gpu, atol=1e-4)


@pytest.fixture(scope="module")
def random_proposals(datasets_dir, tmp_path_factory):
    """A detectron2 proposal pickle of tiny_shapes_train: 50 random boxes inside each image
    (the GPU machine need not have OpenCV's EdgeBoxes)."""
    dicts = DatasetCatalog.get("tiny_shapes_train")
    rng = np.random.default_rng(0)

    def proposals():
        for d in dicts:
            xy = rng.uniform(0, [d["width"] - 40, d["height"] - 40], (50, 2))
            wh = rng.uniform(8, 40, (50, 2))
            yield np.concatenate([xy, xy + wh], 1), np.sort(rng.uniform(0, 1, 50))[::-1]

    path = str(tmp_path_factory.mktemp("proposals") / "tiny_shapes_train_random.pkl")
    save_proposals(path, [d["image_id"] for d in dicts], proposals())
    return path


def test_online_kd_with_amp_and_fp16_teacher_trains_on_cuda(random_proposals, tmp_path):
    """The trainer on the GPU: a teacher with AMP, then online KD (AMP, fp16 teacher) from it;
    the losses stay finite and fall, and the student's checkpoint gives the same scores on the
    CPU."""
    data = [
        "MODEL.DEVICE",
        "cuda",
        "SOLVER.AMP.ENABLED",
        True,
        "DATASETS.TRAIN",
        ("tiny_shapes_train",),
        "DATASETS.TEST",
        (),
        "DATASETS.PROPOSAL_FILES_TRAIN",
        (random_proposals,),
        "SOLVER.IMS_PER_BATCH",
        8,
        "SOLVER.MAX_ITER",
        60,
        "SOLVER.WARMUP_ITERS",
        5,
    ]
    teacher_dir = str(tmp_path / "teacher")
    teacher_losses, _ = train(
        synthetic_cfg("T-WDet.yaml", *IN_PROCESS, "OUTPUT_DIR", teacher_dir, *data)
    )
    with open(os.path.join(teacher_dir, "config.yaml"), "w") as f:
        f.write(synthetic_cfg("T-WDet.yaml", *IN_PROCESS, "OUTPUT_DIR", teacher_dir, *data).dump())
    kd = [
        *data,
        "MODEL.DISTILL.TEACHER_CONFIG",
        os.path.join(teacher_dir, "config.yaml"),
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        os.path.join(teacher_dir, "model_final.pth"),
        "MODEL.DISTILL.TEACHER_FP16",
        True,
    ]
    student_dir = str(tmp_path / "student")
    student_losses, _ = train(
        synthetic_cfg("S-Cls_KD.yaml", *IN_PROCESS, "OUTPUT_DIR", student_dir, *kd)
    )
    for losses in (teacher_losses, student_losses):
        values = np.array([v for v, _ in losses])
        assert np.isfinite(values).all()
        assert values[-10:].mean() < values[:10].mean(), values
    cfg = synthetic_cfg("S-Cls_KD.yaml", *IN_PROCESS, "OUTPUT_DIR", student_dir, *kd)
    scores = []
    for device in ("cuda", "cpu"):
        cfg.MODEL.DEVICE = device
        student = build_model(cfg).eval()
        DetectionCheckpointer(student).load(os.path.join(student_dir, "model_final.pth"))
        image = make_input(1, size=(128, 128))["image"]
        with torch.no_grad():
            scores.append(student([{"image": image}])[0]["image_scores"].cpu())
    torch.testing.assert_close(scores[0], scores[1], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("config_file", ["S-Cls.yaml", "S-Cls_KD.yaml"])
def test_same_seed_gives_the_same_student_on_cuda_with_deterministic(
    config_file, random_proposals, tmp_path
):
    """With DETERMINISTIC, two runs of one SEED on the GPU give the same losses step for step:
    the plain student, and online KD (the teacher only runs forward; the student's L_f pools
    with box_average_pool, whose backward is a matrix product). Without it they differ in the
    last digits (cuDNN's fastest algorithms)."""
    opts = [
        "MODEL.DEVICE",
        "cuda",
        "DETERMINISTIC",
        True,
        "DATASETS.TRAIN",
        ("tiny_shapes_train",),
        "DATASETS.TEST",
        (),
        "DATASETS.PROPOSAL_FILES_TRAIN",
        (random_proposals,),
        "SOLVER.IMS_PER_BATCH",
        8,
        "SOLVER.MAX_ITER",
        30,
    ]
    if config_file == "S-Cls_KD.yaml":  # a teacher with random weights
        teacher_dir = tmp_path / "teacher"
        teacher_dir.mkdir()
        teacher_cfg = synthetic_cfg(
            "T-WDet.yaml", *IN_PROCESS, "OUTPUT_DIR", str(teacher_dir), *opts
        )
        DetectionCheckpointer(build_model(teacher_cfg), str(teacher_dir)).save("model_final")
        (teacher_dir / "config.yaml").write_text(teacher_cfg.dump())
        opts += [
            "MODEL.DISTILL.TEACHER_CONFIG",
            str(teacher_dir / "config.yaml"),
            "MODEL.DISTILL.TEACHER_WEIGHTS",
            str(teacher_dir / "model_final.pth"),
        ]
    try:
        runs = [
            train(
                synthetic_cfg(config_file, *IN_PROCESS, "OUTPUT_DIR", str(tmp_path / str(k)), *opts)
            )[0]
            for k in range(2)
        ]
    finally:  # DETERMINISTIC is set for the whole process
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    assert [v for v, _ in runs[0]] == [v for v, _ in runs[1]]


@pytest.mark.parametrize("gpus", [1, 2])
def test_train_net_trains_and_evaluates_online_kd_on_gpus(
    gpus, datasets_dir, random_proposals, random_teacher, tmp_path
):
    """``tools/train_net.py --num-gpus N`` on CUDA with AMP and the fp16 teacher: online KD
    trains with finite losses, checkpoints and evaluates. One GPU runs in one process (detectron2's
    launch makes no process group for it); two (where the machine has them) run two NCCL
    processes with DDP and gather the evaluation across them."""
    if torch.cuda.device_count() < gpus:
        pytest.skip(f"needs {gpus} GPUs")
    output = str(tmp_path / "student")
    cuda = ["MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", True, "MODEL.DISTILL.TEACHER_FP16", True]
    evaluation = ["DATASETS.TEST", ("synthetic_shapes_val",), "TEST.EVAL_PERIOD", 0]
    cmd, env = train_net_command(
        datasets_dir,
        random_proposals,
        output,
        *random_teacher,
        *cuda,
        *evaluation,
        config="S-Cls_KD.yaml",
    )
    cmd[2:2] = ["--num-gpus", str(gpus)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f]
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert losses and np.isfinite(losses).all(), losses
    assert os.path.exists(os.path.join(output, "model_final.pth"))
    assert "multilabel/mAP" in metrics[-1], metrics[-1]  # the final evaluation
    assert f"World size: {gpus}" in done.stderr + done.stdout
