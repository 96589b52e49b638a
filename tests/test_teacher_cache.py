"""The offline teacher cache: tools/cache_teacher.py, its checks, and KD training from it."""

import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from wsd_distill import add_wsd_distill_config
from wsd_distill.data import MultiLabelDatasetMapper, RaggedStore, get_multilabel_dataset_dicts
from wsd_distill.data.teacher_cache import open_teacher_cache, variant_augmentations
from wsd_distill.data.teacher_targets import TARGET_FIELDS
from wsd_distill.engine import TeacherHook, Trainer
from wsd_distill.engine.teacher_cache_writer import cache_size, write_teacher_cache
from wsd_distill.modeling import build_teacher

from conftest import ROOT, assert_same_final_weights, random_run, run_killed_after, synthetic_cfg

CONFIGS = os.path.join(ROOT, "configs", "Synthetic")


@pytest.fixture(scope="module")
def teacher_files(datasets_dir, tiny_proposals, tmp_path_factory):
    """A randomly initialised synthetic teacher (its config file and checkpoint)."""
    cfg = synthetic_cfg(
        "T-WDet.yaml",
        *("MODEL.WSDDN.MAX_PROPOSALS", 24),
        *("DATASETS.PROPOSAL_FILES_TRAIN", (tiny_proposals["train"],)),
    )
    return random_run(tmp_path_factory.mktemp("teacher"), cfg)


def kd_opts(teacher_files, proposals, *extra):
    return [
        "MODEL.DEVICE",
        "cpu",
        "SEED",
        0,
        "MODEL.DISTILL.TEACHER_CONFIG",
        teacher_files[0],
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        teacher_files[1],
        "DATASETS.PROPOSAL_FILES_TRAIN",
        (proposals,),
        "INPUT.MIN_SIZE_TRAIN",
        (96, 112),
        "INPUT.MAX_SIZE_TRAIN",
        200,
        "MODEL.DISTILL.ROI_TOPK",
        8,
        *extra,
    ]


def kd_cfg(opts):
    """In this process: tiny_shapes_* are the subprocesses' synthetic_shapes_* (same files, same
    ids)."""
    return synthetic_cfg(
        "S-Cls_KD.yaml",
        *("DATASETS.TRAIN", ("tiny_shapes_train",), "DATASETS.TEST", ("tiny_shapes_val",), *opts),
    )


def cache_teacher(datasets_dir, output, opts, *extra):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "tools", "cache_teacher.py"),
        "--config-file",
        os.path.join(CONFIGS, "S-Cls_KD.yaml"),
        "--output",
        output,
        "--chunk-size",
        "4",
        "--batch-size",
        "3",
        *extra,
        *map(str, opts),
    ]
    return cmd, dict(os.environ, DETECTRON2_DATASETS=datasets_dir)


def make_cache(datasets_dir, output, opts):
    cmd, env = cache_teacher(datasets_dir, output, opts)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return output


@pytest.fixture(scope="module")
def teacher_cache(datasets_dir, tiny_proposals, teacher_files, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("cache") / "teacher_cache")
    return make_cache(datasets_dir, output, kd_opts(teacher_files, tiny_proposals["train"]))


def test_cache_holds_what_the_online_teacher_gives(
    datasets_dir, tiny_proposals, teacher_files, teacher_cache
):
    """Within float16's rounding."""
    opts = kd_opts(teacher_files, tiny_proposals["train"])
    cfg = kd_cfg([*opts, "MODEL.DISTILL.TEACHER_CACHE", teacher_cache])
    dicts = get_multilabel_dataset_dicts(
        cfg.DATASETS.TRAIN, proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN
    )
    store = open_teacher_cache(cfg, dicts)
    assert len(store) == 4 * len(dicts)  # 2 sizes x (unflipped, flipped)
    hook = TeacherHook(teacher=build_teacher(cfg), roi_topk=8)
    for size, flipped in [(112, True), (96, False)]:
        augmentations = variant_augmentations(cfg, size, flipped)
        online = MultiLabelDatasetMapper(cfg, True, augmentations=augmentations)
        cached = MultiLabelDatasetMapper(
            cfg, True, augmentations=augmentations, teacher_cache=store
        )
        batch = hook.annotate([online(d) for d in dicts[:3]])
        for x, d in zip(batch, dicts[:3]):
            online_targets, cached_targets = x["teacher"], cached(d)["teacher"]
            assert set(online_targets) == set(cached_targets) == set(TARGET_FIELDS)
            assert len(online_targets["proposal_boxes"]) == 8
            for name, value in cached_targets.items():
                tolerance = 2e-3 if name == "roi_features" else 1e-5  # stored as float16
                torch.testing.assert_close(
                    torch.as_tensor(value), online_targets[name], rtol=tolerance, atol=tolerance
                )


def test_a_flipped_bit_in_the_cache_is_named_when_its_image_is_read(
    teacher_cache, teacher_files, tiny_proposals, tmp_path
):
    """The cache is too large to read whole at COCO size: each image's rows are checked against
    the checksum recorded for them whenever they are read."""
    damaged = str(tmp_path / "teacher_cache")
    shutil.copytree(teacher_cache, damaged)
    cfg = kd_cfg(
        kd_opts(teacher_files, tiny_proposals["train"], "MODEL.DISTILL.TEACHER_CACHE", damaged)
    )
    dicts = get_multilabel_dataset_dicts(
        cfg.DATASETS.TRAIN, proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN
    )
    store = open_teacher_cache(cfg, dicts)
    row = store.offsets[1] * store.fields["roi_features"]["shape"][0] * 2  # float16
    with open(os.path.join(damaged, "roi_features.bin"), "r+b") as f:
        f.seek(row + 5)
        byte = f.read(1)[0]
        f.seek(row + 5)
        f.write(bytes([byte ^ 4]))
    store.get(0, "roi_features")
    with pytest.raises(ValueError, match=re.escape(f"rows of image {store.keys[1]!r} in roi_f")):
        store.get(1, "roi_features")


def test_cache_made_otherwise_is_refused_at_start(
    datasets_dir, tiny_proposals, teacher_files, teacher_cache, tmp_path
):
    dicts = get_multilabel_dataset_dicts(["tiny_shapes_train"])
    other_cfg = add_wsd_distill_config(get_cfg())
    other_cfg.merge_from_file(teacher_files[0])
    torch.manual_seed(1)  # the same teacher, other weights
    DetectionCheckpointer(build_model(other_cfg), save_dir=str(tmp_path)).save("other")
    for extra, what in [
        (["MODEL.DISTILL.TEACHER_WEIGHTS", str(tmp_path / "other.pth")], "teacher_weights_sha1"),
        (["INPUT.MAX_SIZE_TRAIN", 180], "max_size"),
        (["MODEL.DISTILL.TEACHER_TEMPERATURE", 1.0], "teacher_temperatures"),
        (["INPUT.MIN_SIZE_TRAIN", (96,)], "variants"),
        (["MODEL.DISTILL.ROI_TOPK", 4], "roi_topk"),
        (["MODEL.DISTILL.TEACHER_FEATURE_DIM", 128], "teacher_feature_dim"),
    ]:
        cfg = kd_cfg(
            kd_opts(
                teacher_files,
                tiny_proposals["train"],
                "MODEL.DISTILL.TEACHER_CACHE",
                teacher_cache,
                *extra,
            )
        )
        with pytest.raises(
            ValueError, match=f"Teacher cache .* does not fit this config: {what} is"
        ):
            open_teacher_cache(cfg, dicts)
    cfg = kd_cfg(
        kd_opts(
            teacher_files, tiny_proposals["train"], "MODEL.DISTILL.TEACHER_CACHE", teacher_cache
        )
    )
    with pytest.raises(ValueError, match="images_sha1 is"):
        open_teacher_cache(cfg, dicts[1:])
    other_split = [dict(d, file_name=d["file_name"].replace("train", "val")) for d in dicts]
    with pytest.raises(ValueError, match="images_sha1 is"):  # the same ids, other images
        open_teacher_cache(cfg, other_split)


def test_student_trains_from_the_cache_without_a_teacher(
    datasets_dir, tiny_proposals, teacher_files, teacher_cache, tmp_path
):
    cfg = kd_cfg(
        kd_opts(
            teacher_files,
            tiny_proposals["train"],
            "MODEL.DISTILL.TEACHER_CACHE",
            teacher_cache,
            "MODEL.LOAD_PROPOSALS",
            False,
            "DATASETS.TEST",
            (),
            "SOLVER.MAX_ITER",
            3,
            "SOLVER.IMS_PER_BATCH",
            4,
            "DATALOADER.NUM_WORKERS",
            0,
            "OUTPUT_DIR",
            str(tmp_path),
        )
    )
    trainer = Trainer(cfg)
    assert not any(isinstance(h, TeacherHook) for h in trainer._hooks)
    trainer.train()
    assert {"loss_cls", "loss_kd_pred", "loss_kd_feat"} <= set(trainer.storage.latest())


STAGE_1 = ("MODEL.DISTILL.LABEL_WEIGHT", 0.0, "MODEL.DISTILL.PREDICTION_WEIGHT", 0.0)
STAGE_2 = ("MODEL.DISTILL.FEATURE_WEIGHT", 0.0)


@pytest.mark.parametrize(
    "weights,fields,losses",
    [
        (STAGE_1, {"proposal_boxes", "proposal_scores", "roi_features"}, {"loss_kd_feat"}),
        (STAGE_2, {"soft_scores"}, {"loss_cls", "loss_kd_pred"}),
    ],
)
def test_a_stage_loads_only_what_its_losses_use(
    datasets_dir, tiny_proposals, teacher_files, teacher_cache, weights, fields, losses
):
    cfg = kd_cfg(
        kd_opts(
            teacher_files,
            tiny_proposals["train"],
            "MODEL.DISTILL.TEACHER_CACHE",
            teacher_cache,
            "MODEL.LOAD_PROPOSALS",
            False,
            "SOLVER.IMS_PER_BATCH",
            2,
            "DATALOADER.NUM_WORKERS",
            0,
            *weights,
        )
    )
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert all(set(x["teacher"]) == fields for x in batch)
    model = build_model(cfg)
    computed = model(batch)
    assert set(computed) == losses
    sum(computed.values()).backward()


@pytest.mark.slow  # 9 s on 2 cores: chunked resume is tested on predict.py in process
def test_cache_teacher_resumes_after_sigkill(
    datasets_dir, tiny_proposals, teacher_files, teacher_cache, tmp_path
):
    output = str(tmp_path / "resumed_cache")
    cmd, env = cache_teacher(datasets_dir, output, kd_opts(teacher_files, tiny_proposals["train"]))
    records = "wsd_distill.engine.teacher_cache_writer:write_records"  # after its first chunk
    stopped = run_killed_after(cmd, env, records, 1, tmp_path / "hook")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    assert not os.path.exists(output)
    partial = output + ".partial"
    done = len([f for f in os.listdir(partial) if f.startswith("chunk")])
    assert done == 1
    resumed = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    # the finished chunks are reused, not made again
    assert f"Resuming {output}: {4 * done} of 24 images already done" in resumed.stdout
    a, b = RaggedStore(teacher_cache), RaggedStore(output)
    assert a.keys == b.keys and a.meta == b.meta
    for i in range(len(a)):
        for name in a.fields:
            np.testing.assert_array_equal(a.get(i, name), b.get(i, name))


def test_cached_kd_student_resumes_to_the_same_weights(
    datasets_dir, tiny_proposals, teacher_files, teacher_cache, tmp_path
):
    """The cached-KD student (all three losses, 2 loader workers): 12 iterations straight vs
    resumed from its iteration-5 checkpoint, as after a kill: the same final weights."""

    def run(output_dir, resume):
        cfg = kd_cfg(
            kd_opts(
                teacher_files,
                tiny_proposals["train"],
                "MODEL.DISTILL.TEACHER_CACHE",
                teacher_cache,
                "MODEL.LOAD_PROPOSALS",
                False,
                "DATASETS.TEST",
                (),
                "SOLVER.MAX_ITER",
                12,
                "SOLVER.CHECKPOINT_PERIOD",
                5,
                "SOLVER.IMS_PER_BATCH",
                4,
                "DATALOADER.NUM_WORKERS",
                2,
                "OUTPUT_DIR",
                output_dir,
            )
        )
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=resume)
        trainer.train()
        return trainer.start_iter

    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    run(straight, resume=False)
    os.makedirs(resumed)
    shutil.copy(os.path.join(straight, "model_0000004.pth"), resumed)
    with open(os.path.join(resumed, "last_checkpoint"), "w") as f:
        f.write("model_0000004.pth")
    assert run(resumed, resume=True) == 5
    assert_same_final_weights(straight, resumed)


def test_a_cache_the_disk_cannot_hold_is_refused_before_it_starts(
    datasets_dir, tiny_proposals, teacher_files, tmp_path, monkeypatch
):
    """The size is an upper bound by hand: entries x (p'_T + RoIs x (box, score, f16 feature));
    with less free space than twice that, nothing is written and both numbers are named."""
    cfg = kd_cfg(kd_opts(teacher_files, tiny_proposals["train"]))
    size = cache_size(cfg, 24)
    assert size["entries"] == 24 * 2 * 2 and size["rois"] == 8  # 2 sizes x flip; ROI_TOPK 8
    assert size["bytes_per_entry"] == 12 * 4 + 8 * (4 * 4 + 4 + 2 * 256)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    output = str(tmp_path / "cache")
    with pytest.raises(OSError, match=r"needs about 0.0 GiB while it is written, and .* has 0.0"):
        write_teacher_cache(cfg, output)
    assert not os.path.exists(output + ".partial")
