"""A user's own photos through the command-line tools, declared in the config alone
(``DATASETS.REGISTER``): a label list (CSV) and a COCO json with image-level labels only."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import sklearn.datasets
from matplotlib import cbook

from wsd_distill.data.datasets import load_label_list

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["china", "flower", "hopper"]


def sample_photos():
    """The real photographs scikit-learn and matplotlib ship, BGR, by class name."""
    images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    return {
        "china": cv2.imread(os.path.join(images, "china.jpg")),
        "flower": cv2.imread(os.path.join(images, "flower.jpg")),
        "hopper": hopper,
    }


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    """12 training and 6 validation collages (96 x 192: two 96 x 96 crops side by side, of one
    or two photos); train.csv (a label list with a header), val.json (COCO, no bbox)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    photos, rng = sample_photos(), np.random.default_rng(0)
    rows, coco = ["image,labels"], {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    for i in range(18):
        names = [CLASSES[i % 3], CLASSES[(i + i // 3) % 3]]
        crops = []
        for name in names:
            h, w = photos[name].shape[:2]
            y, x = rng.integers(0, h - 200), rng.integers(0, w - 200)
            crops.append(cv2.resize(photos[name][y : y + 200, x : x + 200], (96, 96)))
        file_name = f"{i:03d}.jpg"
        cv2.imwrite(str(root / "images" / file_name), np.concatenate(crops, axis=1))
        labels = sorted(set(names), key=CLASSES.index)
        if i < 12:
            rows.append(f"{file_name},{';'.join(labels)}")
            continue
        coco["images"].append({"id": i, "file_name": file_name, "height": 96, "width": 192})
        for name in labels:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": i,
                    "category_id": 1 + CLASSES.index(name),
                }
            )
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "val.json").write_text(json.dumps(coco))
    return root


def register_opts(root):
    entries = [
        ["mine_train", str(root / "train.csv"), str(root / "images")],
        ["mine_val", str(root / "val.json"), str(root / "images")],
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
    (tmp_path / "bad.csv").write_text("a.jpg,dog;horse\n")
    with pytest.raises(
        ValueError, match=r"bad.csv, entry 1 \(a.jpg\): unknown classes \['horse'\]"
    ):
        load_label_list(
            str(tmp_path / "bad.csv"), str(tmp_path), "test_bad_list", str(tmp_path / "classes.txt")
        )
    (tmp_path / "twice.csv").write_text("a.jpg,dog\na.jpg,cat\n")
    with pytest.raises(ValueError, match="entry 2: image a.jpg is listed twice"):
        load_label_list(str(tmp_path / "twice.csv"), str(tmp_path), "test_twice_list")
    (tmp_path / "gone.csv").write_text("c.jpg,dog\n")
    with pytest.raises(FileNotFoundError, match="entry 1: no image file"):
        load_label_list(str(tmp_path / "gone.csv"), str(tmp_path), "test_gone_list")


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
    teacher = tool(
        "train_net.py",
        "--config-file",
        os.path.join(ROOT, "configs/Synthetic/T-WDet.yaml"),
        *small,
        "MODEL.WSDDN.NUM_CLASSES",
        3,
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
        os.path.join(ROOT, "configs/Synthetic/S-Cls.yaml"),
        *small,
        "MODEL.STUDENT.NUM_CLASSES",
        3,
        "OUTPUT_DIR",
        tmp_path / "student",
    )
    assert student.returncode == 0, student.stderr[-3000:]
    # KD from the teacher's run folder (its config.yaml carries DATASETS.REGISTER)
    kd = tool(
        "train_net.py",
        "--config-file",
        os.path.join(ROOT, "configs/Synthetic/S-Cls_KD.yaml"),
        *small,
        "MODEL.STUDENT.NUM_CLASSES",
        3,
        "OUTPUT_DIR",
        tmp_path / "student_kd",
        "MODEL.DISTILL.TEACHER_CONFIG",
        tmp_path / "teacher" / "config.yaml",
        "MODEL.DISTILL.TEACHER_WEIGHTS",
        tmp_path / "teacher" / "model_final.pth",
        "DATASETS.PROPOSAL_FILES_TRAIN",
        f"('{proposals['train']}',)",
    )
    assert kd.returncode == 0, kd.stderr[-3000:]
    for run in ("teacher", "student", "student_kd"):
        metrics = [json.loads(line) for line in open(tmp_path / run / "metrics.json")]
        assert any("multilabel/mAP" in m for m in metrics), run
    # predict.py from the KD student's run folder alone: the json's class names in scores.csv
    predicted = tool(
        "predict.py",
        "--config-file",
        tmp_path / "student_kd" / "config.yaml",
        "--input",
        photo_set / "images",
        "--output",
        tmp_path / "predictions",
        "MODEL.WEIGHTS",
        tmp_path / "student_kd" / "model_final.pth",
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    header = (tmp_path / "predictions" / "scores.csv").read_text().splitlines()[0]
    assert header == "file_name,picture," + ",".join(CLASSES)
    assert len(list((tmp_path / "predictions").glob("*.jpg"))) == 18


def test_declared_datasets_are_checked(photo_set):
    from wsd_distill.data.datasets import register_declared_datasets

    images = str(photo_set / "images")
    entry = ["decl_train", str(photo_set / "train.csv"), images]
    register_declared_datasets([entry])
    register_declared_datasets([entry])  # the same files again: left as it is
    with pytest.raises(ValueError, match="'decl_train' is registered already, with other files"):
        register_declared_datasets([["decl_train", str(photo_set / "val.json"), images]])
    with pytest.raises(ValueError, match="registered already, with other files \\(builtin\\)"):
        register_declared_datasets([["nuswide_81_train", str(photo_set / "train.csv"), images]])
    with pytest.raises(ValueError, match="each entry is \\[name, annotation_file, image_root\\]"):
        register_declared_datasets([["decl_x", str(photo_set / "val.json")]])
    with pytest.raises(FileNotFoundError, match="dataset 'decl_y': no /nonexistent.json"):
        register_declared_datasets([["decl_y", "/nonexistent.json", images]])
    (photo_set / "labels.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="is not a COCO json \\(.json\\) or a label list"):
        register_declared_datasets([["decl_z", str(photo_set / "labels.xml"), images]])
