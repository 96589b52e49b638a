"""A user's own photos through the command-line tools, declared in the config alone
(``DATASETS.REGISTER``): a label list (CSV) and a COCO json with image-level labels only."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog

from wsd_distill.data.build import dataset_problems, training_dataset_dicts, with_unlabeled_share
from wsd_distill.data.datasets import load_label_list, register_declared_datasets
from wsd_distill.data.datasets.sample_photos import CLASSES, write_sample_photo_set
from wsd_distill.engine import setup_cfg
from wsd_distill.pipeline import Pipeline
from wsd_distill.utils.partial_run import OutputInUse

from conftest import ROOT, run_killed_after, tool_in_process

SPLITS = ("val", "test")


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    """12 training, 6 validation and 6 test collages (96 x 192: two 96 x 96 crops side by side,
    of one or two photos); train.csv (a label list with a header), val.json and test.json
    (COCO, no bbox): ``datasets/prepare_sample_photos.py``'s set, small."""
    root = tmp_path_factory.mktemp("photos")
    write_sample_photo_set(str(root), (12, 6, 6), side=96, seed=0)
    return root


def register_opts(root):
    entries = [
        ["mine_train", str(root / "train.csv"), str(root / "images")],
        *([f"mine_{s}", str(root / f"{s}.json"), str(root / "images")] for s in SPLITS),
    ]
    return ["DATASETS.REGISTER", repr(entries)]


def tool(name, *argv, cwd=None):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", name), *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_label_list_format(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"")
    (tmp_path / "list.tsv").write_text("a.jpg\tdog;cat\nb.jpg\t\n")
    dicts = load_label_list(str(tmp_path / "list.tsv"), str(tmp_path), "test_tsv_list")
    assert [d["multi_labels"] for d in dicts] == [[0, 1], []]  # classes sorted: cat, dog
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    (tmp_path / "bad.csv").write_text("a.jpg,dog;horse\nb.jpg,cat\na.jpg,cow\n")
    with pytest.raises(ValueError) as error:  # every bad entry in one message
        load_label_list(
            str(tmp_path / "bad.csv"), str(tmp_path), "test_bad_list", str(tmp_path / "classes.txt")
        )
    assert str(error.value).splitlines() == [
        f"{tmp_path / 'bad.csv'} (the classes of {tmp_path / 'classes.txt'}):",
        "entry 1 (a.jpg): unknown classes ['horse']",
        "entry 3 (a.jpg): unknown classes ['cow']",
        "entry 3: image a.jpg is listed twice",
    ]
    # a spreadsheet's "CSV UTF-8": a byte order mark before the header, CRLF line ends
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbfimage,labels\r\na.jpg,cat\r\nc.jpg,dog\r\n")
    dicts = load_label_list(str(tmp_path / "excel.csv"), str(tmp_path), "test_excel_list")
    assert [(d["image_id"], d["multi_labels"]) for d in dicts] == [("a.jpg", [0]), ("c.jpg", [1])]
    assert dataset_problems("test_excel_list", dicts) == [  # c.jpg is not there
        f"Dataset 'test_excel_list', image 'c.jpg': no image file {tmp_path / 'c.jpg'}"
    ]


@pytest.mark.parametrize("name,text", [("semi.csv", "a.jpg;dog\n"), ("tabs.csv", "a.jpg\tdog\n")])
def test_a_list_with_another_separator_is_named(tmp_path, name, text):
    """A list whose entries are one column of 'image;label' or 'image<TAB>label' (a .csv)."""
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=f"{name}: every entry is one column .* by ','"):
        load_label_list(str(tmp_path / name), str(tmp_path), "test_separator_list")


@pytest.mark.slow  # 41 s on 2 cores: the same models as the one-command pipeline below
def test_own_photos_declared_in_the_config_through_the_tools(photo_set, tmp_path):
    """check_dataset, generate_proposals, the teacher (trains and evaluates on image-level
    labels: the WSOD evaluation is skipped, not a crash) and the student, all by command line."""
    opts = register_opts(photo_set)
    checked = tool(
        "check_dataset.py",
        "--workers",
        1,
        "--config-file",
        "",
        *opts,
        "DATASETS.TRAIN",
        "('mine_train',)",
        "DATASETS.TEST",
        "('mine_val',)",
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "mine_train: 12 images, 0 bad" in checked.stdout
    assert "mine_val: 6 images, 0 bad" in checked.stdout
    assert "hopper" in checked.stdout and "(no label)" in checked.stdout
    proposals = {}
    for split in ("train", "val"):
        proposals[split] = tmp_path / f"mine_{split}_edge_boxes"
        out = tool(
            "generate_proposals.py",
            "--dataset",
            f"mine_{split}",
            "--method",
            "edge_boxes",
            "--max-proposals",
            30,
            "--output",
            proposals[split],
            *opts,
        )
        assert out.returncode == 0, out.stderr[-2000:]
    small = ["SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 1]
    small += ["DATALOADER.NUM_WORKERS", 0, "DATASETS.TRAIN", "('mine_train',)"]
    small += ["DATASETS.TEST", "('mine_val',)", *opts]
    own = os.path.join(ROOT, "configs", "OwnData")
    teacher = tool(
        "train_net.py",
        "--config-file",
        os.path.join(own, "T-WDet.yaml"),
        *small,
        "OUTPUT_DIR",
        tmp_path / "teacher",
        "DATASETS.PROPOSAL_FILES_TRAIN",
        f"('{proposals['train']}',)",
        "DATASETS.PROPOSAL_FILES_TEST",
        f"('{proposals['val']}',)",
    )
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    assert "no image has boxes for its labels: CorLoc, AP50 skipped" in teacher.stdout
    assert "Per-class AP on mine_val" in teacher.stdout
    student = tool(
        "train_net.py",
        "--config-file",
        os.path.join(own, "S-Cls.yaml"),
        *small,
        "OUTPUT_DIR",
        tmp_path / "student",
    )
    assert student.returncode == 0, student.stderr[-3000:]
    # KD from the teacher's run folder (its config.yaml carries DATASETS.REGISTER)
    kd = tool(
        "train_net.py",
        "--config-file",
        os.path.join(own, "S-Cls_KD.yaml"),
        *small,
        "OUTPUT_DIR",
        tmp_path / "student_kd",
        "MODEL.DISTILL.TEACHER_CONFIG",
        tmp_path / "teacher",
        "DATASETS.PROPOSAL_FILES_TRAIN",
        f"('{proposals['train']}',)",
    )
    assert kd.returncode == 0, kd.stderr[-3000:]
    for run in ("teacher", "student", "student_kd"):
        metrics = [json.loads(line) for line in open(tmp_path / run / "metrics.json")]
        assert any("multilabel/mAP" in m for m in metrics), run
        config = yaml.safe_load((tmp_path / run / "config.yaml").read_text())
        assert config["MODEL"]["CLASS_NAMES"] == CLASSES, run  # the run names its classes
        checkpoint = torch.load(tmp_path / run / "model_final.pth", weights_only=False)
        assert checkpoint["class_names"] == CLASSES, run
    assert config["MODEL"]["STUDENT"]["NUM_CLASSES"] == 3  # 0 in the config: the data's count
    teacher_files = [str(tmp_path / "teacher" / f) for f in ("config.yaml", "model_final.pth")]
    assert [config["MODEL"]["DISTILL"][k] for k in ("TEACHER_CONFIG", "TEACHER_WEIGHTS")] == (
        teacher_files
    )

    def predict(*output_and_opts):
        run, images = tmp_path / "student_kd", photo_set / "images"
        return tool(
            "predict.py", "--config-file", run, "--input", images, "--output", *output_and_opts
        )

    # predict.py from the KD student's run folder alone, its datasets' files gone: the json's
    # class names in scores.csv
    train_csv = (photo_set / "train.csv").read_text()
    os.remove(photo_set / "train.csv")  # (restored below)
    try:
        predicted = predict(tmp_path / "predictions")
    finally:
        (photo_set / "train.csv").write_text(train_csv)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    header = (tmp_path / "predictions" / "scores.csv").read_text().splitlines()[0]
    assert header == "file_name,picture," + ",".join(CLASSES)
    assert len(list((tmp_path / "predictions").glob("*.jpg"))) == 24
    # a teacher's weights for the student: refused, naming the keys, not predicted from a
    # half-loaded model
    wrong = predict(tmp_path / "wrong", "MODEL.WEIGHTS", tmp_path / "teacher")
    assert wrong.returncode != 0
    assert "does not fit the model of this config" in wrong.stderr, wrong.stderr[-2000:]


def test_one_command_pipeline_on_own_photos(photo_set, tmp_path):
    """tools/distill.py: proposals, teacher, plain student, the joint KD student (the default)
    and Table 3 on the photos, a few steps each; run again, every step is found done."""
    argv = ["--train", "mine_train", "--val", "mine_val", "--test", "mine_test"]
    argv += ["--output", tmp_path / "run", "--proposals-dir", tmp_path / "proposals"]
    argv += ["--max-proposals", 30, "--workers", 1, *register_opts(photo_set)]
    argv += ["SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 1]
    argv += ["DATALOADER.NUM_WORKERS", 0]
    first = tool("distill.py", *argv)
    assert first.returncode == 0, first.stderr[-3000:]
    seed0 = tmp_path / "run" / "seed0"
    for run in ("teacher", "student", "student_kd_joint"):
        assert (seed0 / run / "model_final.pth").exists(), run
    assert len(list((seed0 / "teacher" / "pictures").glob("*.jpg"))) == 6
    table = (tmp_path / "run" / "results.md").read_text()
    assert "S-Cls w/ KD (joint)" in table and "KD gain (joint)" in table
    assert "hopper" in first.stdout  # the class table
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["intervals"]["per_seed"]["0"]
    kd, plain, gain = rows["S-Cls w/ KD (joint)"], rows["S-Cls w/o KD"], rows["KD gain (joint)"]
    assert gain[0] == pytest.approx(kd[0] - plain[0])  # the paired gain of the same photos
    assert all(0 <= low <= high <= 100 for _, low, high in (kd, plain)) and gain[1] <= gain[2]
    assert "95% interval over 1000 bootstrap resamples" in table
    assert "Mean ± std over seeds" not in table  # one seed: its table says it all
    assert "trained on mine_train, chosen on mine_val, 30 edge_boxes proposals" in table
    assert "overrides: `DATASETS.REGISTER [['mine_train'" in table and "SOLVER.MAX_ITER 3" in table
    near = json.loads((tmp_path / "run" / "results.json").read_text())["near_chance"]
    assert 0 < near["chance"] < 100  # (3 steps each: some may be near it, and are named)
    assert all(f"{name} {value:.1f}" in table for _, name, value in near["models"])
    # the student to deploy: the best val mAP, the student without KD first among equals
    students = {"S-Cls w/o KD": "student", "S-Cls w/ KD (joint)": "student_kd_joint"}
    val_map = {
        name: json.loads((seed0 / run / "val_results.json").read_text())["results"]["multilabel"][
            "mAP"
        ]
        for name, run in students.items()
    }
    chosen = max(val_map, key=val_map.get)
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["chosen_on_val"]["0"] == [chosen, val_map]
    assert summary["per_seed"]["0"]["S-Cls chosen on val"] == summary["per_seed"]["0"][chosen]
    assert f"- seed 0: {chosen} (S-Cls w/o KD {val_map['S-Cls w/o KD']:.1f}," in table
    assert f"predict.py --config-file {seed0 / students[chosen]}" in first.stdout
    again = tool("distill.py", *argv)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(training" not in again.stdout and again.stdout.count("(done before)") == 3
    # other settings, or a training set edited since: refused, not silently reused (the files
    # may move: the training sets are compared by their images and labels)
    longer = tool("distill.py", *argv, "SOLVER.MAX_ITER", 4)
    assert longer.returncode != 0
    assert f"{seed0 / 'teacher'} was trained with other settings" in longer.stderr
    assert "SOLVER.MAX_ITER: 3 there, 4 now" in longer.stderr
    lines = (photo_set / "train.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join(lines[:-1]))  # the last image left out
    edited = [
        str(a).replace(str(photo_set / "train.csv"), str(tmp_path / "train.csv")) for a in argv
    ]
    relabelled = tool("distill.py", *edited)
    assert relabelled.returncode != 0
    assert (
        "the images, labels or photos of 'mine_train' (changed since)" in relabelled.stderr
    ), relabelled.stderr[-1500:]
    assert (tmp_path / "run" / "results.md").read_text() == table
    # another val split: the students are evaluated on it, not given the old split's numbers
    val = json.loads((photo_set / "val.json").read_text())
    kept = {i["id"] for i in val["images"][:3]}
    val["images"] = [i for i in val["images"] if i["id"] in kept]
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] in kept]
    (tmp_path / "val_half.json").write_text(json.dumps(val))
    entries = ast.literal_eval(register_opts(photo_set)[1])
    entries.append(["mine_val_half", str(tmp_path / "val_half.json"), str(photo_set / "images")])
    other = [a if a != "mine_val" else "mine_val_half" for a in argv]
    other[other.index("DATASETS.REGISTER") + 1] = repr(entries)
    other_val = tool("distill.py", *other)
    assert other_val.returncode == 0, other_val.stderr[-3000:]
    for run in ("student", "student_kd_joint"):
        kept_results = json.loads((seed0 / run / "val_results.json").read_text())
        assert kept_results["split"]["dataset"] == "mine_val_half", run


def last_losses(run):
    """The losses of the last step a run's metrics.json records."""
    with open(run / "metrics.json") as f:
        metrics = [json.loads(line) for line in f if '"total_loss"' in line]
    return {k: v for k, v in metrics[-1].items() if k.startswith(("loss_", "total_loss"))}


@pytest.mark.slow  # 32 s on 2 cores: the cache itself is tested in test_teacher_cache.py
def test_pipeline_with_the_teacher_cache_trains_as_with_the_teacher(photo_set, tmp_path):
    """``--teacher-cache``: the teacher's targets are cached once per seed and the KD stages
    read them (no teacher in the loop), with the losses of the teacher in the loop within
    float16's rounding; a run started one way is continued that way. A test set edited since
    is evaluated again; proposals made with other settings are refused."""
    test_json = tmp_path / "test.json"  # (edited below)
    test_json.write_text((photo_set / "test.json").read_text())
    entries = ast.literal_eval(register_opts(photo_set)[1])
    entries[2][1] = str(test_json)
    argv = ["--train", "mine_train", "--test", "mine_test", "--kd", "two-stage"]
    argv += ["--proposals-dir", tmp_path / "proposals", "--max-proposals", 30, "--workers", 1]
    argv += ["DATASETS.REGISTER", repr(entries), "SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 4]
    argv += ["SOLVER.WARMUP_ITERS", 1, "DATALOADER.NUM_WORKERS", 0]
    cached = tool("distill.py", "--output", tmp_path / "cached", "--teacher-cache", *argv)
    assert cached.returncode == 0, cached.stderr[-3000:]
    online = tool("distill.py", "--output", tmp_path / "online", *argv)
    assert online.returncode == 0, online.stderr[-3000:]
    seed0 = tmp_path / "cached" / "seed0"
    assert (seed0 / "teacher_cache").is_dir()
    assert cached.stdout.count("caching the teacher's targets") == 1
    for run in ("student_kd_stage1", "student_kd_stage2"):
        config = yaml.safe_load((seed0 / run / "config.yaml").read_text())
        assert config["MODEL"]["DISTILL"]["TEACHER_CACHE"] == str(seed0 / "teacher_cache")
        assert config["MODEL"]["LOAD_PROPOSALS"] is False
        losses = last_losses(tmp_path / "online" / "seed0" / run)
        assert losses and last_losses(seed0 / run) == pytest.approx(losses, rel=1e-2), run
    again = tool("distill.py", "--output", tmp_path / "cached", *argv)  # without the flag
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(training" not in again.stdout and "evaluated again" not in again.stdout
    test = json.loads(test_json.read_text())  # a test label removed: evaluated again
    test["annotations"] = test["annotations"][1:]
    test_json.write_text(json.dumps(test))
    edited = tool("distill.py", "--output", tmp_path / "cached", *argv)
    assert edited.returncode == 0, edited.stderr[-3000:]
    for run in ("teacher", "student", "student_kd_stage2"):
        assert f"{seed0 / run}: evaluated again" in edited.stdout, run
    fewer = [a if a != 30 else 20 for a in argv]  # --max-proposals 20: other proposals
    refused = tool("distill.py", "--output", tmp_path / "cached", *fewer)
    assert refused.returncode != 0
    store = tmp_path / "proposals" / "mine_train_edge_boxes"
    assert (
        f"{store} holds proposals made with {{'max_proposals': 30}}, not {{'max_proposals': 20}}"
        in refused.stderr
    )


def test_held_out_splits_must_hold_other_images(photo_set):
    """The pipeline refuses a val or test set that is, or shares images with, the training set
    (before anything is made)."""
    images = str(photo_set / "images")
    for name in ("again_train", "mine_train_copy"):
        register_declared_datasets([[name, str(photo_set / "train.csv"), images]])
    for test, message in [
        ("again_train", "'again_train' is the training set: --val and --test must be others"),
        ("mine_train_copy", "'mine_train_copy' shares 12 image files with the training set"),
    ]:
        with pytest.raises(ValueError, match=message):
            Pipeline(os.path.join(ROOT, "configs", "OwnData"), "unused", "again_train", test)
    # the student chosen on val must not be chosen on test images
    register_declared_datasets([["val_again", str(photo_set / "val.json"), images]])
    register_declared_datasets([["mine_val", str(photo_set / "val.json"), images]])
    for val, message in [
        ("val_again", "'mine_val' shares 6 image files with the val split"),
        ("mine_val", "'mine_val' is both --val and --test: the student chosen on val"),
    ]:
        with pytest.raises(ValueError, match=message):
            Pipeline(os.path.join(ROOT, "configs", "OwnData"), "x", "again_train", "mine_val", val)


def test_a_training_photo_copied_under_another_name_is_found(photo_set, tmp_path):
    """A held-out split is compared with the training set by its photos' bytes, not names."""
    images = str(photo_set / "images")
    register_declared_datasets([["train_again", str(photo_set / "train.csv"), images]])
    shutil.copy(DatasetCatalog.get("train_again")[0]["file_name"], tmp_path / "renamed.jpg")
    (tmp_path / "test.csv").write_text(f"renamed.jpg,{CLASSES[0]}\n")
    register_declared_datasets([["copied_test", str(tmp_path / "test.csv"), str(tmp_path)]])
    with pytest.raises(ValueError, match=r"'copied_test' shares 1 image files .*renamed.jpg"):
        Pipeline(os.path.join(ROOT, "configs", "OwnData"), "x", "train_again", "copied_test")


def test_declared_datasets_are_checked(photo_set):
    images = str(photo_set / "images")
    entry = ["decl_train", str(photo_set / "train.csv"), images]
    register_declared_datasets([entry])
    register_declared_datasets([entry])  # the same files again: left as it is
    with pytest.raises(ValueError, match="'decl_train' is registered already, as \\["):
        register_declared_datasets([["decl_train", str(photo_set / "val.json"), images]])
    with pytest.raises(ValueError, match="registered already, as a builtin dataset"):
        register_declared_datasets([["nuswide_81_train", str(photo_set / "train.csv"), images]])
    with pytest.raises(ValueError, match="each entry is \\[name, annotation_file, image_root\\]"):
        register_declared_datasets([["decl_x"]])
    with pytest.raises(FileNotFoundError, match="val.json: an entry \\[name, image_folder\\] is"):
        register_declared_datasets([["decl_x", str(photo_set / "val.json")]])
    with pytest.raises(FileNotFoundError, match="dataset 'decl_y': no /nonexistent.json"):
        register_declared_datasets([["decl_y", "/nonexistent.json", images]])
    (photo_set / "labels.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="is not a COCO json \\(.json\\), a label list"):
        register_declared_datasets([["decl_z", str(photo_set / "labels.xml"), images]])
    with pytest.raises(ValueError, match="is a folder without Annotations/: a VOC-style"):
        register_declared_datasets([["decl_voc", str(photo_set), "trainval"]])
    (photo_set / "Annotations").mkdir()
    with pytest.raises(FileNotFoundError, match="third item is its split, but there is no"):
        register_declared_datasets([["decl_voc", str(photo_set), "trainval"]])
    (photo_set / "Annotations").rmdir()


def test_a_voc_style_folder_is_declared(tmp_path):
    """Annotations/*.xml, ImageSets/Main/<split>.txt, JPEGImages/, with a class file."""
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "ImageSets/Main/train.txt").write_text("a\nb\n")
    objects = {"a": [("cat", 0), ("dog", 1)], "b": [("dog", 0)]}
    for image_id, objs in objects.items():
        cv2.imwrite(str(tmp_path / "JPEGImages" / f"{image_id}.jpg"), np.zeros((20, 30, 3)))
        xml = "".join(
            f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>2</xmin>"
            f"<ymin>3</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>"
            for c, d in objs
        )
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>30</width><height>20</height></size>{xml}</annotation>"
        )
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    register_declared_datasets(
        [["decl_voc_train", str(tmp_path), "train", tmp_path / "classes.txt"]]
    )
    dicts = DatasetCatalog.get("decl_voc_train")
    assert [d["multi_labels"] for d in dicts] == [[0, 1], [0]]
    assert dicts[0]["ignored_labels"] == [0]  # the dog of "a" is difficult only
    assert dicts[0]["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 12.0]
    assert MetadataCatalog.get("decl_voc_train").thing_classes == ["dog", "cat"]
    assert MetadataCatalog.get("decl_voc_train").year == 0  # all-point AP50
    voc2007 = tmp_path / "VOC2007"
    voc2007.symlink_to(tmp_path, target_is_directory=True)
    register_declared_datasets(
        [["decl_voc07", str(voc2007) + "/", "train", tmp_path / "classes.txt"]]
    )
    assert MetadataCatalog.get("decl_voc07").year == 2007  # VOC 2007's 11-point, as the builtin


def test_overrides_may_follow_the_kd_list_or_the_seeds():
    """``--kd joint DATASETS.REGISTER ...`` or ``--seeds 0 1 DATASETS.REGISTER ...``: the
    override is not taken for a KD variant or a seed."""
    import argparse

    from wsd_distill.pipeline import add_pipeline_arguments, parse_pipeline_args

    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser, "out", ["joint"], "help")
    args = parse_pipeline_args(parser, ["--kd", "joint", "two-stage", "SOLVER.MAX_ITER", "3"])
    assert args.kd == ["joint", "two-stage"] and args.opts == ["SOLVER.MAX_ITER", "3"]
    with pytest.raises(SystemExit):
        parse_pipeline_args(parser, ["--kd", "jont"])
    args = parse_pipeline_args(parser, ["--seeds", "0", "2", "DATASETS.REGISTER", "[]"])
    assert args.seeds == [0, 2] and args.opts == ["DATASETS.REGISTER", "[]"]
    assert parse_pipeline_args(parser, []).seeds == [0]
    with pytest.raises(SystemExit):
        parse_pipeline_args(parser, ["--seeds", "zero"])


def test_a_test_set_with_another_class_order_is_refused(photo_set, tmp_path):
    """A json whose categories come in another order than the training set's would be scored
    against the model's other outputs (hopper's AP swapped with another class's): refused, by
    the model's builder and by the evaluator, naming both."""
    from detectron2.modeling import build_model

    from wsd_distill.engine import Trainer, setup_cfg

    val = json.loads((photo_set / "val.json").read_text())
    first, second = sorted(val["categories"], key=lambda c: c["id"])[:2]
    first["name"], second["name"] = second["name"], first["name"]
    (tmp_path / "swapped.json").write_text(json.dumps(val))
    entries = ast.literal_eval(register_opts(photo_set)[1])
    entries.append(["mine_swapped", str(tmp_path / "swapped.json"), str(photo_set / "images")])
    opts = ["DATASETS.REGISTER", repr(entries), "DATASETS.TRAIN", "('mine_train',)"]
    cfg = setup_cfg(os.path.join(ROOT, "configs", "OwnData", "S-Cls.yaml"), opts)
    with pytest.raises(ValueError, match="'mine_swapped' has its classes in another order"):
        Trainer.build_evaluator(cfg, "mine_swapped")
    cfg.DATASETS.TEST = ("mine_swapped",)
    with pytest.raises(ValueError, match=r"first differences \(index, model, dataset\): \[\(0, "):
        build_model(cfg)


def test_class_order_and_cut_weights_are_refused_before_any_proposal(photo_set, tmp_path):
    """A test set of another class order (found after the teacher's training before) and a cut
    pretrained weights file (found at the teacher's start): refused by the pipeline's
    constructor, before proposals, naming the dataset or the file."""
    test = json.loads((photo_set / "test.json").read_text())
    first, second = sorted(test["categories"], key=lambda c: c["id"])[:2]
    first["name"], second["name"] = second["name"], first["name"]
    (tmp_path / "swapped.json").write_text(json.dumps(test))
    images = str(photo_set / "images")
    register_declared_datasets([["train_early", str(photo_set / "train.csv"), images]])
    register_declared_datasets([["swapped_early", str(tmp_path / "swapped.json"), images]])
    register_declared_datasets([["test_early", str(photo_set / "test.json"), images]])
    configs = os.path.join(ROOT, "configs", "OwnData")
    with pytest.raises(ValueError, match="'swapped_early' has its classes in another order"):
        Pipeline(configs, str(tmp_path / "run"), "train_early", "swapped_early")
    weights = tmp_path / "cut.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, weights)
    weights.write_bytes(weights.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"T-WDet.yaml: its MODEL.WEIGHTS .*cut.pth is unread"):
        Pipeline(configs, "x", "train_early", "test_early", opts=["MODEL.WEIGHTS", str(weights)])
    assert not (tmp_path / "run").exists()


def test_classes_with_test_positives_and_no_training_photo_are_said(photo_set, tmp_path, caplog):
    """A class of the test set that no training photo shows: named in a warning with what to
    do (its AP can only be chance), before any proposal or training."""
    test = json.loads((photo_set / "test.json").read_text())
    untaught = test["annotations"][0]["category_id"]
    train = json.loads((photo_set / "val.json").read_text())  # (other photos than the test's)
    train["annotations"] = [a for a in train["annotations"] if a["category_id"] != untaught]
    (tmp_path / "train.json").write_text(json.dumps(train))
    images = str(photo_set / "images")
    register_declared_datasets([["untaught_train", str(tmp_path / "train.json"), images]])
    register_declared_datasets([["untaught_test", str(photo_set / "test.json"), images]])
    configs = os.path.join(ROOT, "configs", "OwnData")
    pipeline = Pipeline(configs, str(tmp_path / "x"), "untaught_train", "untaught_test")
    with caplog.at_level("WARNING", logger="wsd_distill"):
        pipeline.dataset_tables()
    name = next(c["name"] for c in test["categories"] if c["id"] == untaught)
    assert any(
        "have positives in untaught_test and no training photo" in r.getMessage()
        and name in r.getMessage()
        for r in caplog.records
    )


def test_a_missing_image_is_named_before_any_proposal_is_made(photo_set, tmp_path):
    """distill.py checks every split's files before the proposals (minutes on real photos)."""
    test = json.loads((photo_set / "test.json").read_text())
    test["images"][2]["file_name"] = "gone.jpg"
    (tmp_path / "test.json").write_text(json.dumps(test))
    entries = [
        ["mine_train", str(photo_set / "train.csv"), str(photo_set / "images")],
        ["mine_edited_test", str(tmp_path / "test.json"), str(photo_set / "images")],
    ]
    argv = ["--train", "mine_train", "--test", "mine_edited_test", "--output", tmp_path / "run"]
    argv += ["--proposals-dir", tmp_path / "proposals", "DATASETS.REGISTER", repr(entries)]
    status, stderr = tool_in_process("distill.py", *argv)
    assert status != 0
    image_id = test["images"][2]["id"]
    message = f"Dataset 'mine_edited_test', image {image_id!r}: no image file "
    assert message + str(photo_set / "images" / "gone.jpg") in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "proposals").exists() or not os.listdir(tmp_path / "proposals")


def small_pipeline(photo_set, output, **schedule):
    """The pipeline of the photos, 3 iterations of 4 images each model (12 training images),
    proposals made: ``schedule`` is its ``epochs`` or ``budget``."""
    opts = [*register_opts(photo_set), "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "4"]
    opts += ["SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0"]
    pipeline = Pipeline(
        os.path.join(ROOT, "configs", "OwnData"),
        str(output),
        "mine_train",
        "mine_test",
        proposals_dir=str(output.parent / "proposals"),
        max_proposals=30,
        opts=opts,
        **schedule,
    )
    pipeline.make_proposals()
    return pipeline


def test_epochs_scale_every_schedule_and_stay_with_the_output(photo_set, tmp_path):
    """--epochs 2: the plain student makes 2 passes over the 12 training images at 4 a batch
    (6 iterations), every other model's schedule (3 iterations) is scaled alike; the plan is
    kept, and another --epochs for the same output is refused before training."""
    pipeline = small_pipeline(photo_set, tmp_path / "run", epochs=2.0)
    base = pipeline.config("student", "student", 0).SOLVER  # (before the plan: unscaled)
    plan = pipeline.plan_schedules([0], ["two-stage"])
    assert pipeline.schedule_factor == 2.0
    for run in ("teacher", "student", "student_kd_stage1", "student_kd_stage2"):
        assert f"seed0/{run} " in plan
    assert [line.split()[1:3] for line in plan.splitlines()[3:]] == [["6", "2.0"]] * 4
    assert "not timed" in plan  # timing 3 models would cost more than these 24 iterations
    scaled = pipeline.config("student", "student", 0).SOLVER
    assert (scaled.MAX_ITER, scaled.WARMUP_ITERS) == (6, 2)
    assert scaled.CHECKPOINT_PERIOD == 2 * base.CHECKPOINT_PERIOD
    assert "schedules x2 (--epochs 2)" in pipeline.settings_line()
    kept = json.loads((tmp_path / "run" / "schedule.json").read_text())
    assert kept == {"epochs": 2.0, "factor": 2.0, "seconds_per_iteration": {}}
    for other, named in [({"epochs": 3.0}, "--epochs 3"), ({}, "the configs' schedules")]:
        again = small_pipeline(photo_set, tmp_path / "run", **other)
        with pytest.raises(ValueError, match=f"planned with --epochs 2 .*, not {named}"):
            again.plan_schedules([0], ["two-stage"])


def test_an_absurd_schedule_or_a_cut_plan_is_refused_naming_it(photo_set, tmp_path):
    """--epochs 1e308 is refused before a schedule.json is written (which would hold the
    folder); a cut schedule.json is named, with what to do."""
    with pytest.raises(ValueError, match=r"SOLVER.MAX_ITER .* more than 1e\+09"):
        small_pipeline(photo_set, tmp_path / "run", epochs=1e308).plan_schedules([0], ["joint"])
    assert not (tmp_path / "run" / "schedule.json").exists()
    (tmp_path / "run" / "schedule.json").write_text('{"epochs": 2.0, "fac')
    with pytest.raises(ValueError, match=r"run/schedule.json is not a plan .* delete it"):
        small_pipeline(photo_set, tmp_path / "run", epochs=2.0).plan_schedules([0], ["joint"])


def test_a_budget_is_replanned_from_the_steps_actually_run(
    photo_set, tmp_path, monkeypatch, caplog
):
    """--budget 10 on a machine that trains twice as slowly as it timed: the teacher keeps the
    factor it started with; then the runs left are re-planned to the minutes left at the pace
    the teacher kept (said in a warning), so that the whole command ends on time; each run's
    factor is kept in schedule.json, and a resumed pipeline configures each run with its own."""
    from wsd_distill.pipeline import budget, runner

    clock = [0.0]  # seconds, advanced by the training below
    fake_time = type("FakeTime", (), {"monotonic": staticmethod(lambda: clock[0])})
    monkeypatch.setattr(budget, "time", fake_time)
    monkeypatch.setattr(runner, "time", fake_time)
    seconds = {"teacher": 2.0, "student": 1.0, "kd": 3.0}  # timed; 3 iterations each: 18 s
    trained = {}

    def train_and_evaluate(cfg):  # twice the timed seconds per iteration
        folder = os.path.basename(cfg.OUTPUT_DIR)
        trained[folder] = cfg.SOLVER.MAX_ITER
        clock[0] += 2 * cfg.SOLVER.MAX_ITER * seconds.get(folder, seconds["kd"])
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        open(os.path.join(cfg.OUTPUT_DIR, "results.json"), "w").write("{}")
        return {}

    monkeypatch.setattr(runner, "train_and_evaluate", train_and_evaluate)
    output = tmp_path / "run"
    output.mkdir()
    plan = {"budget_minutes": 10.0, "factor": 600 / 18, "seconds_per_iteration": seconds}
    (output / "schedule.json").write_text(json.dumps(plan))  # as timed by a first start
    pipeline = small_pipeline(photo_set, output, budget=10.0)
    pipeline.plan_schedules([0], ["joint"])
    teacher = runner.teacher_options(str(output / "seed0" / "teacher"))
    with caplog.at_level("WARNING", logger="wsd_distill.pipeline.budget"):
        for name, folder, extra in [
            ("teacher", "teacher", ()),
            ("student", "student", ()),
            ("kd_joint", "student_kd_joint", teacher),
        ]:
            pipeline.run(name, folder, 0, extra)
    # the teacher: 100 iterations (planned 200 s, took 400); 200 s left for the two others,
    # which would take 800 at that pace: x600/18 -> x600/18/4, 25 iterations each
    assert trained == {"teacher": 100, "student": 25, "student_kd_joint": 25}
    assert clock[0] == pytest.approx(600)
    said = [r.getMessage() for r in caplog.records if r.name == "wsd_distill.pipeline.budget"]
    assert len(said) == 1 and "re-planned, their schedules x8.33 (were x33.3)" in said[0]
    kept = json.loads((output / "schedule.json").read_text())
    factors = {"seed0/teacher": 600 / 18, "seed0/student": 150 / 18}
    assert kept["run_factors"] == pytest.approx({**factors, "seed0/student_kd_joint": 150 / 18})
    os.remove(output / "seed0" / "student_kd_joint" / "results.json")  # as if stopped in it
    resumed = small_pipeline(photo_set, output, budget=10.0)
    resumed.plan_schedules([0], ["joint"])
    assert resumed.config("teacher", "teacher", 0).SOLVER.MAX_ITER == 100
    assert resumed.config("kd_joint", "student_kd_joint", 0, teacher).SOLVER.MAX_ITER == 25


def test_a_budget_spent_before_training_is_refused():
    from wsd_distill.pipeline.budget import Budget

    runs = {"seed0/teacher": ["teacher", 3]}
    spent = Budget(1.0, {"teacher": 1.0}, runs, started=time.monotonic() - 90)
    with pytest.raises(ValueError, match=r"--budget 1: proposals and timing took 1.5 min"):
        spent.first_factor()
    assert Budget(2.0, {"teacher": 1.0}, runs, time.monotonic() - 60).first_factor() == (
        pytest.approx(20, rel=0.01)
    )  # 60 s left for 3 iterations of 1 s


@pytest.mark.slow  # 18 s on 2 cores: --epochs scales the schedules above, without timing
def test_budget_times_each_model_and_the_timing_changes_no_run(photo_set, tmp_path, monkeypatch):
    """--budget: a few timed iterations of the teacher, the student and the KD student size
    every schedule by the factor that fits the minutes; a resumed pipeline keeps that plan
    (not timed again), and a run trained after the timing is the one trained without it."""
    pipeline = small_pipeline(photo_set, tmp_path / "run", budget=1.0)
    plan = pipeline.plan_schedules([0], ["joint"])
    kept = json.loads((tmp_path / "run" / "schedule.json").read_text())
    seconds = kept["seconds_per_iteration"]
    assert set(seconds) == {"teacher", "student", "kd"} and min(seconds.values()) > 0
    left = 60 - kept["spent_seconds"]  # (the proposals and the timing took the rest)
    assert kept["factor"] == pytest.approx(left / (3 * sum(seconds.values())), rel=0.01)
    assert pipeline.schedule_factor == kept["factor"]
    assert f"{seconds['kd']:.2f}" in plan and "min of training" in plan
    assert not list((tmp_path / "run").glob(".timing*"))
    runs = ("teacher", "student", "student_kd_joint")  # (each run logs its minutes)
    assert set(pipeline.planned_minutes) == {str(tmp_path / "run" / "seed0" / r) for r in runs}
    monkeypatch.setattr(Pipeline, "time_models", lambda *a: pytest.fail("timed again"))
    resumed = small_pipeline(photo_set, tmp_path / "run", budget=1.0)
    assert resumed.plan_schedules([0], ["joint"]) == plan
    assert resumed.schedule_factor == kept["factor"]
    untimed = small_pipeline(photo_set, tmp_path / "untimed")
    weights = []
    for run in (pipeline, untimed):
        untimed.schedule_factor = pipeline.run_factor(str(tmp_path / "run" / "seed0" / "teacher"))
        run.teacher(0)
        model = torch.load(tmp_path / run.output / "seed0" / "teacher" / "model_final.pth")
        weights.append(model["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_run_folder_another_process_trains_is_refused(photo_set, tmp_path):
    """Two pipelines (or a pipeline and tools/train_net.py) on one run folder would train over
    each other: the second is refused before it trains, naming the first's process."""
    pipeline = small_pipeline(photo_set, tmp_path / "run")
    teacher = tmp_path / "run" / "seed0" / "teacher"
    teacher.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (teacher / "lock").write_text(str(other.pid))
        with pytest.raises(OutputInUse, match=f"is being written by process {other.pid}"):
            pipeline.teacher(0)
        assert not (teacher / "model_final.pth").exists()
    finally:
        other.kill()
        other.wait()
    pipeline.teacher(0)  # the lock of a process that has ended is taken over, then removed
    assert (teacher / "model_final.pth").exists() and not (teacher / "lock").exists()


def test_a_plan_is_made_while_the_teacher_has_not_finished(photo_set, tmp_path):
    """A pipeline stopped while its teacher trains leaves a teacher folder with config.yaml and
    checkpoints but no model_final.pth: the plan of the resumed pipeline sizes the KD runs
    anyway (it refused that folder as an unfinished teacher, so the run could not continue)."""
    pipeline = small_pipeline(photo_set, tmp_path / "run", epochs=1.0)
    plan = pipeline.plan_schedules([0], ["joint"])
    teacher = tmp_path / "run" / "seed0" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "config.yaml").write_text(pipeline.config("teacher", "teacher", 0).dump())
    (teacher / "last_checkpoint").write_text("model_0000001.pth")
    resumed = small_pipeline(photo_set, tmp_path / "run", epochs=1.0)
    assert resumed.plan_schedules([0], ["joint"]) == plan


@pytest.mark.slow  # 35 s on 2 cores: the plan above, then the same command to the end
def test_a_pipeline_killed_while_the_teacher_trains_continues(photo_set, tmp_path):
    """tools/distill.py killed (SIGKILL, as Ctrl-C or a crash would stop it) right after the
    teacher's first checkpoint: the same command resumes the teacher from that checkpoint and
    trains every run to the end."""
    argv = ["--train", "mine_train", "--test", "mine_test", "--output", tmp_path / "run"]
    argv += ["--proposals-dir", tmp_path / "proposals", "--max-proposals", 30, "--epochs", 1]
    argv += [*register_opts(photo_set), "SOLVER.IMS_PER_BATCH", 4, "SOLVER.CHECKPOINT_PERIOD", 1]
    argv += ["SOLVER.WARMUP_ITERS", 1, "DATALOADER.NUM_WORKERS", 0]
    cmd = [sys.executable, os.path.join(ROOT, "tools", "distill.py"), *map(str, argv)]
    save = "wsd_distill.checkpoint.checkpointer:FiniteCheckpointer.save"
    stopped = run_killed_after(cmd, dict(os.environ), save, 1, tmp_path / "hook")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    teacher = tmp_path / "run" / "seed0" / "teacher"
    assert (teacher / "last_checkpoint").exists() and not (teacher / "model_final.pth").exists()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting training from iteration 1" in again.stderr + again.stdout
    for run in ("teacher", "student", "student_kd_joint"):
        assert (tmp_path / "run" / "seed0" / run / "results.json").exists(), run


def test_a_teacher_not_above_the_student_on_val_is_said_before_distilling(
    photo_set, tmp_path, monkeypatch, caplog
):
    """Before the KD students, the pipeline compares the teacher's val mAP with the plain
    student's: one warning with both numbers and what to try where the teacher is not above."""
    pipeline = small_pipeline(photo_set, tmp_path / "run")
    pipeline.val = "mine_val"
    teacher, student = (pipeline.config(n, n, 0) for n in ("teacher", "student"))
    for teacher_map, warned in ((38.1, True), (43.5, True), (50.0, False)):
        maps = {teacher.OUTPUT_DIR: teacher_map, student.OUTPUT_DIR: 43.5}
        monkeypatch.setattr(
            pipeline, "evaluate_on_val", lambda cfg: {"multilabel": {"mAP": maps[cfg.OUTPUT_DIR]}}
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="wsd_distill"):
            assert pipeline.compare_on_val(0, teacher, student) == (teacher_map, 43.5)
        message = (
            f"seed 0: the teacher scores {teacher_map:.1f} val mAP, the plain student 43.5: a "
            "teacher below its student has little to teach; try a stronger teacher"
        )
        assert (message in caplog.text) == warned, caplog.text


@pytest.fixture(scope="module")
def unlabeled_photos(tmp_path_factory):
    """A folder of 10 photos without labels (another draw of the sample set's collages)."""
    root = tmp_path_factory.mktemp("unlabeled")
    write_sample_photo_set(str(root), (8, 1, 1), side=96, seed=1)
    return root / "images"


def test_unlabeled_photos_join_the_kd_students_stream_with_their_labels_hidden(
    photo_set, unlabeled_photos
):
    """DATASETS.REGISTER's [name, folder] and DATASETS.UNLABELED: the KD student's training
    images are the labelled ones, then the folder's with no labels (``unlabeled``); the
    labelled ones are repeated so that the unlabeled make at most UNLABELED_SHARE of the
    stream; a teacher or a dataset outside DATASETS.TRAIN is refused."""
    register = [[*e] for e in ast.literal_eval(register_opts(photo_set)[1])]
    register.append(["mine_unlabeled", str(unlabeled_photos)])
    opts = ["DATASETS.REGISTER", repr(register), "MODEL.LOAD_PROPOSALS", False]
    opts += ["DATASETS.TRAIN", "('mine_train', 'mine_unlabeled')"]
    opts += ["DATASETS.UNLABELED", "('mine_unlabeled',)", "MODEL.DISTILL.TEACHER_WEIGHTS", "t.pth"]
    cfg = setup_cfg(os.path.join(ROOT, "configs", "OwnData", "S-Cls_KD.yaml"), opts)
    dicts = training_dataset_dicts(cfg)
    labelled, hidden = dicts[:12], dicts[12:]
    assert len(hidden) == 10 and all(d["unlabeled"] and not d["multi_labels"] for d in hidden)
    assert all(d["multi_labels"] and "unlabeled" not in d for d in labelled)
    assert cfg.MODEL.CLASS_NAMES == CLASSES  # the labelled set's, whatever the order
    stream = with_unlabeled_share(dicts, 0.3)  # 10 unlabeled: the 12 labelled twice, 10 / 34
    assert len(stream) == 34 and sum(bool(d.get("unlabeled")) for d in stream) == 10
    assert with_unlabeled_share(dicts, 0.5) == dicts  # 10 of 22 is under 0.5
    with pytest.raises(ValueError, match=r"DATASETS.UNLABELED \['other'\]: each must be one of"):
        setup_cfg(os.path.join(ROOT, "configs", "OwnData", "S-Cls_KD.yaml"),
                  [*opts, "DATASETS.UNLABELED", "('other',)"])  # fmt: skip
    with pytest.raises(ValueError, match="only a student distilling from a teacher"):
        setup_cfg(os.path.join(ROOT, "configs", "OwnData", "T-WDet.yaml"), opts)


def test_an_unlabeled_photo_of_a_held_out_split_is_refused(photo_set, tmp_path):
    """A held-out photo among the unlabeled ones, renamed: refused by its bytes before any
    proposal is made, naming both files; an empty folder, in one line."""
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    test = json.loads((photo_set / "test.json").read_text())["images"][1]["file_name"]
    shutil.copy(photo_set / "images" / test, folder / "holiday.jpg")
    entries = ast.literal_eval(register_opts(photo_set)[1]) + [["mine_more", str(folder)]]
    argv = ["--train", "mine_train", "--val", "mine_val", "--test", "mine_test"]
    argv += ["--unlabeled", "mine_more", "--output", tmp_path / "run"]
    argv += ["--proposals-dir", tmp_path / "proposals", "DATASETS.REGISTER", repr(entries)]
    status, stderr = tool_in_process("distill.py", *argv)
    assert status == 2, stderr
    assert f"{folder / 'holiday.jpg'} is {photo_set / 'images' / test} of 'mine_test'" in stderr
    assert not (tmp_path / "proposals").exists()
    os.remove(folder / "holiday.jpg")
    entries[-1][0] = "mine_empty"
    argv[argv.index("mine_more")] = "mine_empty"
    argv[-1] = repr(entries)
    status, stderr = tool_in_process("distill.py", *argv)
    assert status == 2 and f"Dataset 'mine_empty': no image under {folder}" in stderr, stderr


@pytest.mark.slow  # 60 s on 2 cores: the pipeline with a folder of unlabeled photos
def test_distill_with_a_folder_of_unlabeled_photos(photo_set, unlabeled_photos, tmp_path):
    """tools/distill.py --unlabeled, the folder declared on the command line alone: proposals
    are made for it, the teacher and the plain student train on the labelled photos, the KD
    student on both (its config records them), a few steps each."""
    entries = ast.literal_eval(register_opts(photo_set)[1]) + [["more", str(unlabeled_photos)]]
    argv = ["--train", "mine_train", "--test", "mine_test", "--unlabeled", "more"]
    argv += ["--output", tmp_path / "run", "--proposals-dir", tmp_path / "proposals"]
    argv += ["--max-proposals", 30, "DATASETS.REGISTER", repr(entries)]
    argv += ["SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 1]
    argv += ["DATALOADER.NUM_WORKERS", 0]
    out = tool("distill.py", *argv)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "proposals" / "more_edge_boxes").exists()
    seed0 = tmp_path / "run" / "seed0"
    for run, train in (("teacher", ["mine_train"]), ("student_kd_joint", ["mine_train", "more"])):
        config = yaml.safe_load((seed0 / run / "config.yaml").read_text())
        assert config["DATASETS"]["TRAIN"] == train, run
    assert "of each batch unlabeled on average" in out.stderr + out.stdout


def test_a_pipeline_beside_another_on_one_output_waits_for_its_plan(photo_set, tmp_path):
    """Two pipelines on one output (other seeds) would each plan and write schedule.json: the
    second waits for the first's plan (<output>/.schedule.lock) and keeps it."""
    import threading

    from filelock import FileLock

    output = tmp_path / "run"
    output.mkdir()
    first = FileLock(str(output / ".schedule.lock"))
    first.acquire()
    planned = []
    second = small_pipeline(photo_set, output, epochs=2.0)
    thread = threading.Thread(target=lambda: planned.append(second.plan_schedules([1], ["joint"])))
    thread.start()
    thread.join(timeout=2)
    assert thread.is_alive() and not planned  # waiting
    kept = {"epochs": 2.0, "factor": 1.5, "seconds_per_iteration": {}}  # the first's plan
    (output / "schedule.json").write_text(json.dumps(kept))
    first.release()
    thread.join(timeout=60)
    assert planned and second.schedule_factor == 1.5
