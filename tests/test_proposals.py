"""Proposal generators, the detectron2 pickle and .mat readers, and resumable generation."""

import ctypes
import json
import os
import pickle
import signal
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from scipy.io import savemat

from wsd_distill.box_proposers import (
    EdgeBoxes,
    SelectiveSearch,
    build_box_proposer,
    postprocess_proposals,
)
from wsd_distill.box_proposers.generate import generate_proposal_file
from wsd_distill.data import (
    RaggedStore,
    RaggedStoreWriter,
    load_mat_proposals,
    load_proposals_into_dataset,
    read_proposals,
    save_proposals,
)
from wsd_distill.data.datasets.synthetic import render_image
from wsd_distill.data.proposals import fetch_proposals
from wsd_distill.data.statistics import proposal_recall
from wsd_distill.utils.ragged_store import is_ragged_store

from conftest import ROOT, random_rpn, run_killed_after, tool_in_process


def test_postprocess_clips_dedupes_drops_tiny_and_falls_back():
    boxes = np.array(
        [[-5, -5, 50, 40], [0.2, 0.1, 50.3, 39.8], [10, 10, 12, 60], [30, 30, 90, 90]], np.float32
    )
    scores = np.array([0.5, 0.9, 0.8, 0.1], np.float32)
    out, s = postprocess_proposals(boxes, scores, height=60, width=80, max_proposals=10, min_size=4)
    np.testing.assert_allclose(
        out, [[0.2, 0.1, 50.3, 39.8], [30, 30, 80, 60]], atol=1e-5
    )  # best of the duplicates
    np.testing.assert_allclose(s, [0.9, 0.1])
    out, s = postprocess_proposals(
        boxes[2:3], scores[2:3], 60, 80, 10, min_size=4
    )  # only a thin box
    np.testing.assert_array_equal(out, [[0, 0, 80, 60]])


@pytest.mark.parametrize(
    "generator", [EdgeBoxes(max_proposals=200), SelectiveSearch(max_proposals=200, mode="fast")]
)
def test_generators_find_the_objects(generator):
    images = [render_image(np.random.default_rng([1, 0, i]), 192) for i in range(8)]
    dicts = []
    for image, objects in images:
        boxes, scores = generator(image)
        assert 1 <= len(boxes) <= 200 and boxes.dtype == np.float32
        assert (
            (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 192).all() and (boxes[:, 3] <= 192).all()
        )
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 4).all()
        assert (np.diff(scores) <= 0).all()
        assert len(np.unique(np.round(boxes), axis=0)) == len(boxes)
        dicts.append(
            {
                "proposal_boxes": boxes,
                "annotations": [{"bbox": b, "bbox_mode": 0} for _, b in objects],
            }
        )
    assert proposal_recall(dicts)["recall@0.5"] > 0.6


@pytest.mark.parametrize(
    "generator", [EdgeBoxes(max_proposals=100), SelectiveSearch(max_proposals=100)]
)
def test_the_same_image_gets_the_same_boxes_whatever_ran_before(generator):
    """Selective search ranks with the C library's rand(): the same image must get the same boxes
    after other images and other draws (another worker, or a resumed run), as EdgeBoxes does."""
    image, other = (render_image(np.random.default_rng([2, i]), 128)[0] for i in range(2))
    first = generator(image)
    generator(other)
    ctypes.CDLL(None).rand()
    again = generator(image)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


@pytest.mark.parametrize("name", ["p.pkl", "p_store"])  # detectron2 pickle; proposal store
def test_proposals_round_trip_and_missing_image_error(tmp_path, name):
    dicts = [{"image_id": i, "file_name": f"{i}.jpg"} for i in (3, 1, 2)]
    boxes = [np.array([[0, 0, 10, 10], [1, 2, 3, 4]], np.float32) * (i + 1) for i in range(3)]
    boxes[1] = boxes[1][:1]  # a different count per image
    logits = [np.array([2.0, 1.0], np.float32)[: len(b)] for b in boxes]
    path = str(tmp_path / name)
    save_proposals(path, [3, 1, 2], zip(boxes, logits))
    if name.endswith(".pkl"):
        with open(path, "rb") as f:
            assert set(pickle.load(f)) == {"ids", "boxes", "objectness_logits", "bbox_mode"}
    loaded = load_proposals_into_dataset(
        [dict(d) for d in dicts], path
    )  # detectron2's reader for the pickle
    stores = {}
    for d, b, s in zip(loaded, boxes, logits):
        d = fetch_proposals(
            d, stores
        )  # the store's dicts point at a row; reading it is the mapper's job
        np.testing.assert_array_equal(d["proposal_boxes"], b)
        np.testing.assert_array_equal(d["proposal_objectness_logits"], s)
    ids, read_boxes, _ = read_proposals(path)
    assert ids == [3, 1, 2] and all(np.array_equal(a, b) for a, b in zip(read_boxes, boxes))
    with pytest.raises(KeyError, match=rf"{name} has no proposals for .*image id '7'"):
        load_proposals_into_dataset(dicts + [{"image_id": "7", "file_name": "7.jpg"}], path)
    with pytest.raises(ValueError, match="3 image ids but proposals for 2 images; nothing written"):
        save_proposals(str(tmp_path / f"short_{name}"), [3, 1, 2], zip(boxes[:2], logits))
    assert not any(p.name.startswith("short") for p in tmp_path.iterdir())


def flip_bit(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 1]))


def test_a_flipped_bit_in_a_store_is_named_with_its_image(tmp_path):
    """A box that moves to the next image keeps every size and offset plausible: the checksums
    recorded when the store was written find it, before training (the proposals are checked
    whole when attached) or when the image is read."""
    path = str(tmp_path / "store")
    dicts = [{"image_id": i, "file_name": f"{i}.jpg"} for i in (3, 1, 2)]
    boxes = [np.array([[0, 0, 5, 5], [1, 1, 4, 4]], np.float32)] * 3
    save_proposals(path, [3, 1, 2], zip(boxes, [np.zeros(2)] * 3))
    assert len(load_proposals_into_dataset(dicts, path)) == 3
    offsets = os.path.join(path, "offsets.bin")
    np.array([0, 3, 4, 6], np.int64).tofile(offsets)  # image 3 takes a box of image 1
    with pytest.raises(ValueError, match=r"offsets.bin does not match the checksum"):
        load_proposals_into_dataset(dicts, path)
    np.array([0, 2, 4, 6], np.int64).tofile(offsets)
    flip_bit(os.path.join(path, "boxes.bin"), 16 * 2 + 3)  # a box of the second image
    with pytest.raises(ValueError, match=r"the rows of image 1 in boxes.bin do not match"):
        load_proposals_into_dataset(dicts, path)
    store = RaggedStore(path)
    store.get(0, "boxes")  # the other images read as ever
    with pytest.raises(ValueError, match=r"Corrupt store .*store: the rows of image 1"):
        store.get(1, "boxes")
    with pytest.raises(ValueError, match=r"the rows of image 1"):
        store.verify()


def test_store_is_checked_when_opened(tmp_path):
    path = str(tmp_path / "store")
    with RaggedStoreWriter(
        path, {"boxes": ("float16", (4,)), "scores": ("float32", (3,), True)}, meta={"content": "x"}
    ) as w:
        w.append(
            (5, 1), boxes=np.ones((2, 4)), scores=[0.1, 0.2, 0.3]
        )  # tuple keys survive the JSON index
        w.append((6, 0), boxes=np.zeros((0, 4)), scores=[1, 2, 3])
    store = RaggedStore(path)
    assert store.keys == [(5, 1), (6, 0)] and store.row_of((6, 0)) == 1
    os.makedirs(tmp_path / "other.tmp-999999999")  # left by a killed writer (no such process)
    with RaggedStoreWriter(str(tmp_path / "other"), {"a": ("float32", ())}) as w:
        w.append(0, a=[1.0])
    assert not os.path.exists(tmp_path / "other.tmp-999999999")
    assert store.get(0, "boxes").dtype == np.float16 and store.get(1, "boxes").shape == (0, 4)
    np.testing.assert_allclose(store.get(1, "scores"), [1, 2, 3])
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(store)).get(0, "boxes"), np.ones((2, 4))
    )
    with pytest.raises(ValueError, match=r"is a store of 'x' .* not proposals"):
        load_proposals_into_dataset([{"image_id": (5, 1)}], path)
    with (
        pytest.raises(ValueError, match="fields have different numbers of rows"),
        RaggedStoreWriter(str(tmp_path / "bad"), {"a": ("float32", ()), "b": ("float32", ())}) as w,
    ):
        w.append(0, a=[1, 2], b=[1])
    assert not os.path.exists(tmp_path / "bad") and not list(tmp_path.glob("bad.tmp-*"))

    with open(os.path.join(path, "boxes.bin"), "r+b") as f:  # truncated
        f.truncate(8)
    with pytest.raises(
        ValueError, match=r"Corrupt store .*boxes.bin has 8 bytes, the index says 16"
    ):
        RaggedStore(path)
    np.array([0, 5, 2], np.int64).tofile(os.path.join(path, "offsets.bin"))
    os.truncate(os.path.join(path, "boxes.bin"), 16)
    with pytest.raises(ValueError, match="offsets.bin does not match the checksum recorded"):
        RaggedStore(path)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    del index["crc32"]  # a store of an older wsd-distill: read unchecked, its offsets still are
    (tmp_path / "store" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="offsets.bin is not a row index"):
        RaggedStore(path)
    os.remove(os.path.join(path, "index.json"))
    with pytest.raises(FileNotFoundError, match="is not a store: no .*index.json"):
        RaggedStore(path)
    with pytest.raises(FileNotFoundError, match="Proposal file .*nowhere does not exist"):
        load_proposals_into_dataset([], str(tmp_path / "nowhere"))


def _mat_dataset():
    sizes = [(100, 200), (300, 150)]  # (height, width): not square, so the box order can be told
    return [
        {"image_id": f"00000{i}", "file_name": f"/x/00000{i}.jpg", "height": h, "width": w}
        for i, (h, w) in enumerate(sizes)
    ]


# 1-based inclusive (x1, y1, x2, y2) boxes of the two images, and the detectron2 boxes they mean
XYXY_1BASED = [
    np.array([[1, 1, 200, 100], [11, 21, 150, 60]], float),
    np.array([[5, 250, 150, 300]], float),
]
EXPECTED = [np.array([[0, 0, 200, 100], [10, 20, 150, 60]]), np.array([[4, 249, 150, 300]])]


def _cell(items):
    cell = np.empty((1, len(items)), dtype=object)
    cell[0, :] = items
    return cell


def test_mat_v5_selective_search_layout(tmp_path):
    """Fast R-CNN selective search files: 1-based (y1, x1, y2, x2), image names in a cell."""
    path = str(tmp_path / "ss.mat")
    savemat(
        path,
        {
            "boxes": _cell([b[:, [1, 0, 3, 2]] for b in XYXY_1BASED]),
            "images": _cell(["000001", "000000"])[:, ::-1],
        },
    )
    ids, boxes, logits = load_mat_proposals(path, _mat_dataset())
    assert ids == ["000000", "000001"]
    for b, e in zip(boxes, EXPECTED):
        np.testing.assert_allclose(b, e)
    assert (np.diff(logits[0]) <= 0).all()
    with pytest.raises(ValueError, match="must be 'auto'"):
        load_mat_proposals(path, _mat_dataset(), box_order="xy")


def test_mat_v73_edge_boxes_layout_with_scores(tmp_path):
    """MATLAB v7.3 (HDF5): cells are object references, arrays stored transposed."""
    path = str(tmp_path / "eb.mat")
    scores = [np.array([0.2, 0.9]), np.array([0.5])]
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")

        def cell(name, arrays):
            refs_ = [refs.create_dataset(f"{name}{i}", data=a).ref for i, a in enumerate(arrays)]
            f.create_dataset(name, data=np.array(refs_, dtype=h5py.ref_dtype).reshape(-1, 1))

        cell("boxes", [b.T for b in XYXY_1BASED])
        cell("boxScores", [s.reshape(1, -1) for s in scores])
        cell(
            "images",
            [np.array([ord(c) for c in f"00000{i}"], np.uint16).reshape(-1, 1) for i in range(2)],
        )
    ids, boxes, logits = load_mat_proposals(path, _mat_dataset())
    np.testing.assert_allclose(boxes[0], EXPECTED[0][::-1])  # sorted by boxScores
    np.testing.assert_allclose(logits[0], [0.9, 0.2])
    np.testing.assert_allclose(boxes[1], EXPECTED[1])


def test_mat_errors_name_the_problem(tmp_path):
    path = str(tmp_path / "sq.mat")
    savemat(path, {"boxes": _cell([np.array([[1.0, 1, 5, 5]])]), "images": _cell(["000000"])})
    square = [{"image_id": "000000", "file_name": "/x/000000.jpg", "height": 10, "width": 10}]
    with pytest.raises(ValueError, match="cannot tell the box order"):
        load_mat_proposals(path, square)
    with pytest.raises(KeyError, match="no proposals for image id 'zzz'"):
        load_mat_proposals(
            path, [dict(square[0], image_id="zzz", file_name="/x/zzz.jpg")], box_order="xyxy"
        )


def _generate(datasets_dir, output, *extra):
    env = dict(os.environ, DETECTRON2_DATASETS=datasets_dir)
    cmd = [
        sys.executable,
        os.path.join(ROOT, "tools", "generate_proposals.py"),
        "--dataset",
        "synthetic_shapes_test",
        "--method",
        "edge_boxes",
        "--max-proposals",
        "100",
        "--output",
        output,
        *extra,
    ]
    return cmd, env


@pytest.mark.slow  # 29 s on 2 cores: chunks checked on resume in test_faults.py
def test_generate_proposals_resumes_after_sigkill(datasets_dir, tmp_path):
    reference = str(tmp_path / "reference.pkl")
    cmd, env = _generate(datasets_dir, reference, "--workers", "2")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "images/s" in done.stdout

    output = str(tmp_path / "resumed_store")  # a proposal store this time
    cmd, env = _generate(datasets_dir, output, "--workers", "1", "--chunk-size", "1")
    chunk = "wsd_distill.box_proposers.generate:_run_chunk"  # killed after its third chunk
    stopped = run_killed_after(cmd, env, chunk, 3, tmp_path / "hook")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    assert not os.path.exists(output), "a killed run must not leave an output file"
    partial = output + ".partial"
    chunks = [f for f in os.listdir(partial) if f.startswith("chunk") and f.endswith(".npz")]
    assert len(chunks) == 3
    for f in chunks:
        np.load(os.path.join(partial, f))["boxes"]  # every finished chunk is whole

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "Resuming" in resumed.stderr + resumed.stdout
    assert not os.path.exists(partial) and not list(tmp_path.glob("resumed_store.tmp-*"))
    (a_ids, a_boxes, _), (b_ids, b_boxes, _) = read_proposals(reference), read_proposals(output)
    assert a_ids == b_ids == [d["image_id"] for d in DatasetCatalog.get("tiny_shapes_test")]
    for x, y in zip(a_boxes, b_boxes):
        np.testing.assert_array_equal(x, y)

    converted = str(tmp_path / "converted_fp16")
    tool = [
        sys.executable,
        os.path.join(ROOT, "tools", "generate_proposals.py"),
        "--from",
        reference,
        "--output",
        converted,
    ]
    subprocess.run([*tool, "--dtype", "float16"], env=env, capture_output=True, check=True)
    c_ids, c_boxes, _ = read_proposals(converted)
    assert c_ids == a_ids and all(
        np.abs(x - y).max() <= 0.125 for x, y in zip(a_boxes, c_boxes)
    )  # fp16 at < 256 px
    # with --dataset: checked against its images, which the store then records
    tool[-1] = str(tmp_path / "converted_checked")
    subprocess.run([*tool, "--dataset", "synthetic_shapes_test"], env=env, check=True)
    recorded = RaggedStore(tool[-1]).meta["image_names"]
    assert recorded[0] == "test/" + os.path.basename(
        DatasetCatalog.get("tiny_shapes_test")[0]["file_name"]
    )
    tool[-1] = str(tmp_path / "converted_wrong")
    wrong = subprocess.run(
        [*tool, "--dataset", "synthetic_shapes_val"], env=env, capture_output=True, text=True
    )
    assert wrong.returncode != 0 and "are not in synthetic_shapes_val" in wrong.stderr
    assert not os.path.exists(tool[-1])


@pytest.mark.slow  # 23 s: two tools in subprocesses
def test_converting_proposals_sees_a_declared_dataset(tmp_path):
    """A pickle converted against a dataset of DATASETS.REGISTER: checked and recorded."""
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((40, 60, 3), np.uint8))
    (tmp_path / "list.csv").write_text("a.jpg,dog\n")
    boxes = np.array([[1, 2, 30, 20]], np.float32)
    save_proposals(str(tmp_path / "p.pkl"), ["a.jpg"], [(boxes, np.ones(1, np.float32))])
    register = repr([["mine", str(tmp_path / "list.csv"), str(tmp_path)]])
    argv = [sys.executable, os.path.join(ROOT, "tools", "generate_proposals.py")]
    argv += ["--from", str(tmp_path / "p.pkl"), "--dataset", "mine"]
    argv += ["--output", str(tmp_path / "store"), "DATASETS.REGISTER", register]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert RaggedStore(str(tmp_path / "store")).meta["image_names"] == [f"{tmp_path.name}/a.jpg"]
    # a WSDDN/OICR .mat (1-based, inclusive y1, x1, y2, x2), matched to the dataset by image
    # name; the order told from the image's size, read from the file (a label list records none)
    wide = np.array([[1, 2, 50, 20]], np.float32)  # x2 50: beyond the height (40) as a y
    savemat(
        str(tmp_path / "p.mat"),
        {"boxes": _cell([(wide + [1, 1, 0, 0])[:, [1, 0, 3, 2]]]), "images": _cell(["a"])},
    )
    argv[argv.index("--from") + 1] = str(tmp_path / "p.mat")
    argv[argv.index("--output") + 1] = str(tmp_path / "from_mat")
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ids, found, _ = read_proposals(str(tmp_path / "from_mat"))
    assert ids == ["a.jpg"]
    np.testing.assert_allclose(found[0], wide)
    # an --output that exists (a store, or any folder of the user's) is never replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for existing in ("from_mat", "mine"):
        argv[argv.index("--output") + 1] = str(tmp_path / existing)
        status, stderr = tool_in_process("generate_proposals.py", *argv[2:])
        assert status == 2 and f"--output {tmp_path / existing} exists" in stderr, stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert read_proposals(str(tmp_path / "from_mat"))[0] == ["a.jpg"]
    argv[argv.index("--output") + 1] = str(tmp_path / "new")
    without = [a for a in argv if a not in ("--dataset", "mine")]
    status, stderr = tool_in_process("generate_proposals.py", *without[2:])
    assert status == 2 and "--dataset is needed" in stderr


def test_unfinished_run_with_other_settings_is_rejected(datasets_dir, tmp_path):
    dicts = DatasetCatalog.get("tiny_shapes_val")
    output = str(tmp_path / "p.pkl")
    os.makedirs(output + ".partial")
    with open(os.path.join(output + ".partial", "manifest.json"), "w") as f:
        f.write('{"method": "selective_search"}')
    open(os.path.join(output + ".partial", "chunk_000000.npz"), "wb").close()  # it wrote some
    with pytest.raises(RuntimeError, match="unfinished run with other settings"):
        generate_proposal_file(dicts, output, "edge_boxes", {"max_proposals": 50})
    assert not os.path.exists(output)


def test_an_output_with_a_trailing_slash_is_the_store_itself(datasets_dir, tmp_path):
    dicts = DatasetCatalog.get("tiny_shapes_val")[:3]
    output = str(tmp_path / "store") + os.sep
    generate_proposal_file(dicts, output, "edge_boxes", {"max_proposals": 20})
    assert is_ragged_store(str(tmp_path / "store"))
    assert not os.path.exists(tmp_path / "store.partial")
    assert not os.path.exists(tmp_path / "store" / ".partial")


@pytest.mark.slow  # 20 s: an RPN built and run on the tiny set
def test_detectron2_method_writes_an_rpn_s_boxes(datasets_dir, tmp_path):
    """tools/generate_proposals.py --method detectron2 with model zoo's RPN config (ResNet-18
    FPN, random weights saved as a checkpoint) at 128 px: a store of at most 50 boxes per
    image, inside the image, that the loader reads; without weights it refuses to start."""
    config, opts, weights = random_rpn(tmp_path)
    output = str(tmp_path / "rpn_proposals")
    cmd, env = _generate(datasets_dir, output, "--d2-config", config, "--d2-opts", *opts)
    cmd[cmd.index("edge_boxes")], cmd[cmd.index("100")] = "detectron2", "50"
    in_process = [a if a != "synthetic_shapes_test" else "tiny_shapes_test" for a in cmd[2:]]
    status, stderr = tool_in_process("generate_proposals.py", *in_process)
    assert status != 0 and "--method detectron2 needs --d2-weights" in stderr
    cmd += ["--d2-weights", weights]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    dicts = load_proposals_into_dataset(DatasetCatalog.get("tiny_shapes_test"), output)
    for d in dicts:
        boxes = np.asarray(fetch_proposals(d, {})["proposal_boxes"])
        assert 1 <= len(boxes) <= 50
        assert (boxes >= 0).all() and (boxes[:, 2] <= d["width"]).all()
        assert (boxes[:, 3] <= d["height"]).all()
    # the same boxes from the class in this process, best first, scored by sigmoid(objectness)
    proposer = build_box_proposer(
        "detectron2",
        config_file=config,
        weights=weights,
        max_proposals=50,
        opts=opts,
    )
    boxes, scores = proposer(cv2.imread(dicts[0]["file_name"]))
    stored = np.asarray(fetch_proposals(dicts[0], {})["proposal_boxes"])
    np.testing.assert_allclose(boxes, stored, atol=1e-3)
    assert (np.diff(scores) <= 0).all() and ((scores > 0) & (scores <= 1)).all()
