"""Inference on images from disk: tools/predict.py (student and teacher) and detectron2's
DefaultPredictor on the teacher with on-the-fly proposals."""

import csv
import os
import runpy
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor

from wsd_distill import check_config
from wsd_distill.box_proposers import build_box_proposer
from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.engine import setup_cfg

from conftest import ROOT, random_rpn, random_run, synthetic_cfg, tool_in_process


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of a colour JPEG, a greyscale PNG, a corrupt JPEG and a text file."""
    folder = tmp_path_factory.mktemp("photos")
    image = render_image(np.random.default_rng(0), 160)[0]
    cv2.imwrite(str(folder / "colour.jpg"), image)
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


# the teacher's own 9 s: slow (its proposals at test time are tested below, in process)
@pytest.mark.parametrize(
    "config", ["S-Cls.yaml", pytest.param("T-WDet.yaml", marks=pytest.mark.slow)]
)
def test_predict_on_a_folder_reports_the_corrupt_file_and_does_the_rest(photos, tmp_path, config):
    """Batched with loader workers (the defaults) and one image at a time: the same scores."""
    weights = random_run(tmp_path, synthetic_cfg(config), "model")[1]
    runs = {}
    for name, batching in (("batched", []), ("one_by_one", ["--batch-size", 1, "--workers", 0])):
        output = tmp_path / name
        done = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "tools", "predict.py"),
                "--config-file",
                os.path.join(ROOT, "configs", "Synthetic", config),
                "--input",
                str(photos),
                "--output",
                str(output),
                *map(str, batching),
                "MODEL.DEVICE",
                "cpu",
                "MODEL.WEIGHTS",
                weights,
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1, done.stderr[-2000:]  # one file could not be read
        assert "broken.jpg" in done.stderr and "notes.txt" not in done.stderr
        assert (output / "unreadable.txt").read_text().startswith(str(photos / "broken.jpg"))
        assert "1 of 3 images could not be read" in done.stderr
        pictures = ["colour.jpg.jpg", "grey.png.jpg"]
        assert sorted(os.listdir(output)) == [*pictures, "scores.csv", "unreadable.txt"]
        with open(output / "scores.csv") as f:
            runs[name] = rows = list(csv.reader(f))
        assert rows[0][:5] == ["file_name", "picture", "circle", "triangle", "square"]
        assert len(rows[0]) == 14
        assert [os.path.basename(r[0]) for r in rows[1:]] == ["colour.jpg", "grey.png"]
        assert [r[1] for r in rows[1:]] == pictures
        scores = np.array([r[2:] for r in rows[1:]], dtype=float)
        assert ((scores > 0) & (scores < 1)).all()
        assert cv2.imread(str(output / "colour.jpg.jpg")).shape[0] >= 160  # the drawing
    assert runs["batched"] == runs["one_by_one"]


def test_a_stopped_prediction_resumes_where_it_stopped(photos, tmp_path, capsys):
    """Stopped after two chunks of one image (the model fails on the third image), the same
    command goes on from there: the finished chunks' pictures are not drawn again and scores.csv
    is that of a run never stopped; other settings on the unfinished output are refused. The
    overrides may follow --input's folders directly."""
    weights = random_run(tmp_path, synthetic_cfg("S-Cls.yaml"), "model")[1]
    tool = runpy.run_path(os.path.join(ROOT, "tools", "predict.py"))
    main, predict = tool["main"], tool["predict"]

    def args(output, *more):
        argv = ["--config-file", os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml")]
        argv += ["--output", str(output), "--chunk-size", "1", "--batch-size", "1", *more]
        argv += ["--workers", "0", "--input", str(photos), "MODEL.WEIGHTS", weights]
        return tool["parse_args_with_overrides"](tool["get_parser"](), "input", argv)

    assert main(args(tmp_path / "whole")) == 1  # broken.jpg
    calls = []

    def stopped(model, inputs):  # (broken.jpg, the first in order, calls no model)
        calls.append(inputs)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict(model, inputs)

    main.__globals__["predict"] = stopped
    with pytest.raises(KeyboardInterrupt):
        main(args(tmp_path / "stopped"))
    main.__globals__["predict"] = predict
    assert sorted(os.listdir(tmp_path / "stopped")) == ["colour.jpg.jpg", "scores.csv.partial"]
    drawn = os.stat(tmp_path / "stopped" / "colour.jpg.jpg").st_mtime_ns
    with pytest.raises(RuntimeError, match="holds an unfinished run with other settings"):
        main(args(tmp_path / "stopped", "--top-k", "2"))
    capsys.readouterr()
    assert main(args(tmp_path / "stopped")) == 1
    assert "predict: resuming, 2 of 3 images done before" in capsys.readouterr().err
    assert os.stat(tmp_path / "stopped" / "colour.jpg.jpg").st_mtime_ns == drawn
    for name in ("scores.csv", "unreadable.txt"):
        assert (tmp_path / "stopped" / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert not (tmp_path / "stopped" / "scores.csv.partial").exists()


def test_a_photo_too_thin_to_resize_is_named_and_the_rest_is_scored(photos, tmp_path, capsys):
    """A 3000 x 2 photo resizes to a side of 0 px for the model: it is listed with its size,
    and the other photos are scored."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos / "colour.jpg", folder)
    cv2.imwrite(str(folder / "strip.png"), np.zeros((2, 3000, 3), np.uint8))
    weights = random_run(tmp_path, synthetic_cfg("S-Cls.yaml"), "model")[1]
    tool = runpy.run_path(os.path.join(ROOT, "tools", "predict.py"))
    argv = ["--config-file", os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml")]
    argv += ["--output", str(tmp_path / "out"), "--workers", "0", "--input", str(folder)]
    args = tool["parse_args_with_overrides"](tool["get_parser"](), "input", argv)
    args.opts += ["MODEL.WEIGHTS", weights]
    assert tool["main"](args) == 1
    assert "strip.png: 3000 x 2 px: cannot be resized for the model" in capsys.readouterr().err
    with open(tmp_path / "out" / "scores.csv") as f:
        assert [os.path.basename(r[0]) for r in list(csv.reader(f))[1:]] == ["colour.jpg"]


def test_a_folder_is_read_with_its_subfolders_and_pictures_keep_their_paths(tmp_path):
    tool = runpy.run_path(os.path.join(ROOT, "tools", "predict.py"))
    for name in ("b/x.JPG", "a/x.png", "x.png", "a/notes.txt", "c/d/y.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = tool["list_images"]([str(tmp_path), str(tmp_path / "a" / "*.png")])
    names = ["a/x.png", "b/x.JPG", "c/d/y.gif", "x.png", "x.png"]
    assert found == [(str(tmp_path / n), n) for n in names[:4]] + [
        (str(tmp_path / "a/x.png"), "x.png")
    ]
    assert tool["picture_names"](names) == [
        "a/x.png.jpg",
        "b/x.JPG.jpg",
        "c/d/y.gif.jpg",
        "x.png.jpg",
        "x.png_2.jpg",
    ]


def test_predict_refuses_an_input_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    status, stderr = tool_in_process(
        "predict.py",
        *("--config-file", os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml")),
        *("--input", tmp_path / "empty", tmp_path / "*.png", "--output", tmp_path / "out"),
    )
    assert status != 0 and "predict: no image in" in stderr
    assert not (tmp_path / "out").exists()


def test_predict_refuses_an_output_inside_its_input(tmp_path):
    """Pictures written into the input folder would be predicted on the next run."""
    tool = runpy.run_path(os.path.join(ROOT, "tools", "predict.py"))
    (tmp_path / "photos").mkdir()
    for output in (tmp_path / "photos", tmp_path / "photos" / "out"):
        with pytest.raises(ValueError, match=f"--output {output} is inside the input folder"):
            tool["check_output_outside_inputs"](str(output), [str(tmp_path / "photos")])
    tool["check_output_outside_inputs"](str(tmp_path / "out"), [str(tmp_path / "photos")])


def test_default_predictor_runs_the_teacher_with_its_own_proposals(tmp_path):
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "Synthetic", "T-WDet.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.PROPOSAL_GENERATOR.NAME", "EdgeBoxesProposals"],
    )
    cfg.MODEL.WEIGHTS = random_run(tmp_path, synthetic_cfg("T-WDet.yaml"), "model")[1]
    image = render_image(np.random.default_rng(1), 128)[0]
    output = DefaultPredictor(cfg)(image)
    assert output["image_scores"].shape == (12,)
    boxes = output["instances"].pred_boxes.tensor
    assert len(boxes) > 0 and (boxes[:, 2:] <= 128).all()  # in the original image's pixels
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "PrecomputedProposals"
    with pytest.raises(KeyError, match=r"or MODEL.PROPOSAL_GENERATOR.NAME \(e.g. EdgeBoxesProp"):
        DefaultPredictor(cfg)(image)
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "SlidingWindow"
    with pytest.raises(ValueError, match="NAME is 'SlidingWindow': a WSDDN takes"):
        check_config(cfg)


def test_default_predictor_runs_the_teacher_on_a_detectron2_rpn_s_boxes(tmp_path):
    """MODEL.PROPOSAL_GENERATOR.NAME "Detectron2Proposals": the teacher pools the boxes of the
    RPN of DETECTRON2_PROPOSER (model zoo's config made small and written as a file, random
    weights), the same boxes as the proposer gives on that image; without weights it refuses to
    build, naming the keys."""
    config, opts, weights = random_rpn(tmp_path)
    rpn_cfg = get_cfg()
    rpn_cfg.merge_from_file(config)
    rpn_cfg.merge_from_list(opts)
    small = tmp_path / "rpn_small.yaml"
    small.write_text(rpn_cfg.dump())
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "Synthetic", "T-WDet.yaml"),
        [
            *("MODEL.DEVICE", "cpu", "MODEL.PROPOSAL_GENERATOR.NAME", "Detectron2Proposals"),
            *("MODEL.WSDDN.DETECTRON2_PROPOSER.CONFIG_FILE", str(small)),
            *("MODEL.WSDDN.DETECTRON2_PROPOSER.WEIGHTS", weights),
        ],
    )
    cfg.MODEL.WEIGHTS = random_run(tmp_path, synthetic_cfg("T-WDet.yaml"), "model")[1]
    image = render_image(np.random.default_rng(1), 128)[0]
    predictor = DefaultPredictor(cfg)
    output = predictor(image)
    assert output["image_scores"].shape == (12,) and len(output["instances"]) > 0
    with torch.no_grad():
        pooled = predictor.model.teacher_outputs(
            [{"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}]
        )["proposals"][0]
    boxes, scores = build_box_proposer(
        "detectron2", config_file=config, weights=weights, max_proposals=500, opts=opts
    )(image)
    np.testing.assert_allclose(pooled.proposal_boxes.tensor.numpy(), boxes, atol=1e-4)
    np.testing.assert_allclose(pooled.objectness_logits.numpy(), scores, atol=1e-6)
    cfg.MODEL.WSDDN.DETECTRON2_PROPOSER.WEIGHTS = ""
    with pytest.raises(ValueError, match="DETECTRON2_PROPOSER.CONFIG_FILE and .WEIGHTS"):
        check_config(cfg)


@pytest.mark.slow  # 24 s: a teacher trained by train_net.py first
def test_predict_draws_a_teachers_view_of_a_declared_dataset(tmp_path):
    """--dataset: the teacher's top proposals (the dataset's precomputed ones) and labels, one
    picture per image named by its file; a student is refused, naming what to do."""
    from detectron2.data import MetadataCatalog

    from wsd_distill.data.proposals import save_proposals

    classes = MetadataCatalog.get("synthetic_shapes_train").thing_classes
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"im{i}.jpg"), render_image(rng, 96)[0])
    (tmp_path / "list.csv").write_text("".join(f"im{i}.jpg,{classes[i]}\n" for i in range(3)))
    boxes = [(np.array([[4, 4, 60, 50], [10, 20, 90, 90]], np.float32), np.ones(2)) for _ in "abc"]
    save_proposals(str(tmp_path / "store"), [f"im{i}.jpg" for i in range(3)], boxes)
    register = repr(
        [["mine", str(tmp_path / "list.csv"), str(tmp_path), str(tmp_path / "classes.txt")]]
    )
    opts = ["DATASETS.REGISTER", register, "DATASETS.TRAIN", "('mine',)"]
    opts += [
        "DATASETS.TEST",
        "('mine',)",
        "DATASETS.PROPOSAL_FILES_TEST",
        f"('{tmp_path / 'store'}',)",
    ]
    opts += ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"]

    def predict(config, output):
        weights = random_run(tmp_path, synthetic_cfg(config), "model")[1]
        argv = [sys.executable, os.path.join(ROOT, "tools", "predict.py"), "--config-file"]
        argv += [os.path.join(ROOT, "configs", "Synthetic", config), "--dataset", "mine"]
        argv += ["--output", str(output), *opts, "MODEL.WEIGHTS", weights]
        return subprocess.run(argv, capture_output=True, text=True)

    done = predict("T-WDet.yaml", tmp_path / "pictures")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Wrote 3 pictures" in done.stdout
    assert sorted(os.listdir(tmp_path / "pictures")) == [f"im{i}.jpg.jpg" for i in range(3)]
    student = predict("S-Cls.yaml", tmp_path / "student")
    assert student.returncode == 2 and "run it on the images with --input" in student.stderr
