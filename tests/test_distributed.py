"""Distributed training on CPU (GLOO, 2 processes) and resuming a run killed with SIGKILL."""

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import launch
from detectron2.utils import comm

from wsd_distill import add_wsd_distill_config
from wsd_distill.data.datasets import register_synthetic_shapes
from wsd_distill.engine import Trainer

from conftest import (
    ROOT,
    SMALL,
    assert_same_final_weights,
    run_killed_after,
    train_net_command,
)


def _train_on_rank(datasets_dir, config_file, opts, output_dir):
    """One DDP process: train, then save this rank's parameters and evaluation results."""
    if "tiny_shapes_train" not in DatasetCatalog.list():  # a spawned process starts bare
        register_synthetic_shapes(
            os.path.join(datasets_dir, "synthetic_shapes"), prefix="tiny_shapes"
        )
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list([*opts, "OUTPUT_DIR", output_dir])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = (
        trainer.model.module
        if isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        else trainer.model
    )
    rank = comm.get_rank()
    torch.save(
        {k: v.detach() for k, v in model.named_parameters()},
        os.path.join(output_dir, f"rank{rank}.pth"),
    )
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "world_size": comm.get_world_size(),
                "results": trainer._last_eval_results,
                "losses": sorted(trainer.storage.latest()),
            },
            f,
        )
    if rank == 0:
        with open(os.path.join(output_dir, "config.yaml"), "w") as f:
            f.write(cfg.dump())


def _check_ranks(output_dir, test_set):
    params = [torch.load(os.path.join(output_dir, f"rank{r}.pth")) for r in range(2)]
    assert params[0].keys() == params[1].keys()
    for k in params[0]:
        assert torch.equal(params[0][k], params[1][k]), f"ranks disagree on {k}"
    reports = [json.load(open(os.path.join(output_dir, f"rank{r}.json"))) for r in range(2)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert (
        "multilabel" in reports[0]["results"] and not reports[1]["results"]
    )  # rank 0 reports for both
    scores = np.load(os.path.join(output_dir, "inference", test_set, "multilabel_scores.npz"))
    assert sorted(scores["image_ids"]) == sorted(
        str(d["image_id"]) for d in DatasetCatalog.get(test_set)
    )
    return reports[0]


@pytest.mark.slow  # 30 s on 2 cores
def test_two_process_cpu_training_of_teacher_and_student_with_kd(
    datasets_dir, tiny_proposals, tmp_path
):
    teacher_dir = str(tmp_path / "teacher")
    data = [
        "DATASETS.TRAIN",
        ("tiny_shapes_train",),
        "DATASETS.TEST",
        ("tiny_shapes_val",),
        "DATASETS.PROPOSAL_FILES_TRAIN",
        (tiny_proposals["train"],),
        "DATASETS.PROPOSAL_FILES_TEST",
        (tiny_proposals["val"],),
        "DATALOADER.NUM_WORKERS",
        1,
        "SOLVER.MAX_ITER",
        3,
    ]
    config = os.path.join(ROOT, "configs", "Synthetic", "T-WDet.yaml")
    launch(
        _train_on_rank,
        2,
        dist_url="auto",
        args=(datasets_dir, config, [*SMALL, *data], teacher_dir),
    )
    _check_ranks(teacher_dir, "tiny_shapes_val")

    student_dir = str(tmp_path / "student_kd")
    kd = [
        "MODEL.DISTILL.TEACHER_CONFIG",
        os.path.join(teacher_dir, "config.yaml"),
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        os.path.join(teacher_dir, "model_final.pth"),
        "MODEL.STUDENT.INPUT_SIZE",
        48,
    ]
    config = os.path.join(ROOT, "configs", "Synthetic", "S-Cls_KD.yaml")
    launch(
        _train_on_rank,
        2,
        dist_url="auto",
        args=(datasets_dir, config, [*SMALL, *data, *kd], student_dir),
    )
    report = _check_ranks(student_dir, "tiny_shapes_val")
    assert {"loss_cls", "loss_kd_pred", "loss_kd_feat"} <= set(report["losses"])


@pytest.mark.parametrize(
    "config,grouping,processes",
    [
        pytest.param("T-WDet.yaml", False, 1, marks=pytest.mark.slow),  # 15 s on 2 cores
        pytest.param("T-WDet.yaml", True, 1, marks=pytest.mark.slow),  # 16 s on 2 cores
        ("S-Cls_KD.yaml", False, 1),  # the student's resume: teacher, hook and loader
        pytest.param("T-WDet.yaml", False, 2, marks=pytest.mark.slow),  # 75 s on 2 cores
    ],
    ids=[
        "teacher_batches_from_workers",
        "teacher_aspect_ratio_grouping",
        "student_online_kd",
        "teacher_2_processes",
    ],
)
def test_run_killed_with_sigkill_resumes_to_the_same_weights(
    datasets_dir, tiny_proposals, random_teacher, tmp_path, config, grouping, processes
):
    """The teacher (dropout, random flips, 2 loader workers): 12 iterations straight vs killed
    after its iteration-5 checkpoint and resumed; the resumed run must enter the loader's stream
    mid-way (5 is not a multiple of the 2 workers) and restore the RNG for dropout. With aspect
    ratio grouping (the COCO configs) the workers send single images, without it whole batches.
    The KD student's TeacherHook wraps the loader after the resume set its start, and building
    the teacher must not shift the student's random stream. Two processes (GLOO, each rank its
    own loader stream) are killed together and resumed together."""
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    opts = ["DATALOADER.ASPECT_RATIO_GROUPING", grouping]
    if config != "T-WDet.yaml":
        opts += random_teacher
    cmd, env = train_net_command(
        datasets_dir, tiny_proposals["train"], straight, *opts, config=config
    )
    cmd[2:2] = ["--num-gpus", str(processes)]
    subprocess.run(cmd, env=env, check=True, capture_output=True)

    cmd, env = train_net_command(
        datasets_dir, tiny_proposals["train"], killed, *opts, config=config
    )
    cmd[2:2] = ["--num-gpus", str(processes)]
    # the trainer and its data-loader workers, killed once model_0000004.pth is saved
    save = "wsd_distill.checkpoint.checkpointer:FiniteCheckpointer.save"
    stopped = run_killed_after(cmd, env, save, 1, tmp_path / "hook")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    assert os.path.exists(os.path.join(killed, "model_0000004.pth"))
    assert not os.path.exists(os.path.join(killed, "model_final.pth"))
    resumed = subprocess.run(
        [*cmd[:2], "--resume", *cmd[2:]], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Starting training from iteration 5" in resumed.stderr + resumed.stdout

    assert_same_final_weights(straight, killed)


@pytest.mark.slow  # 28 s: the fast suite's SIGKILL resume covers resuming
def test_resume_skips_a_truncated_last_checkpoint(datasets_dir, tiny_proposals, tmp_path):
    """A run whose last checkpoint (iteration 10) was cut short resumes, saying so, from the one
    before (iteration 5) and reaches the weights of the uninterrupted run."""
    straight, cut = str(tmp_path / "straight"), str(tmp_path / "cut")
    cmd, env = train_net_command(datasets_dir, tiny_proposals["train"], straight)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    shutil.copytree(straight, cut)
    os.remove(os.path.join(cut, "model_final.pth"))
    with open(os.path.join(cut, "last_checkpoint"), "w") as f:
        f.write("model_0000009.pth")
    last = os.path.join(cut, "model_0000009.pth")
    os.truncate(last, os.path.getsize(last) // 2)
    cmd, env = train_net_command(datasets_dir, tiny_proposals["train"], cut)
    resumed = subprocess.run(
        [*cmd[:2], "--resume", *cmd[2:]], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stderr + resumed.stdout
    assert f"Cannot read checkpoint {last}" in log and "resuming from" in log
    assert "Starting training from iteration 5" in log
    assert_same_final_weights(straight, cut)
