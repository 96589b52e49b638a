"""Files users send each other run no code: proposal pickles, checkpoints (a run's
model_final.pth, MODEL.WEIGHTS, a resumed last checkpoint) and configs (a --config-file, a run
folder's config.yaml, MODEL.DISTILL.TEACHER_CONFIG, a _BASE_). Each crafted file is refused,
naming it, and the command it carries never runs."""

import io
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from wsd_distill.checkpoint import (
    FiniteCheckpointer,
    UnreadableCheckpointError,
    load_trained_weights,
)
from wsd_distill.data import load_proposals_into_dataset
from wsd_distill.engine import setup_cfg
from wsd_distill.modeling.teacher import get_teacher_cfg
from wsd_distill.utils import atomic_write_bytes
from wsd_distill.utils.ragged_store import RaggedStoreWriter

from conftest import ROOT, tiny_cfg


class Payload:
    """Unpickled, it would create the file ``flag``."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (open, (self.flag, "w"))


def test_a_proposal_pickle_that_runs_code_is_refused(tmp_path):
    flag = tmp_path / "ran"
    path = tmp_path / "proposals.pkl"
    data = {"ids": [0], "boxes": [np.zeros((1, 4))], "objectness_logits": [Payload(flag)]}
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=r"proposals.pkl: it asks for io.open.*refused"):
        load_proposals_into_dataset([{"image_id": 0}], str(path), check_images=False)
    assert not flag.exists()
    # plain data (detectron2's own format, BoxMode included) is read as before
    good = {"ids": [0], "boxes": [np.ones((2, 4))], "objectness_logits": [np.array([0.1, 0.9])]}
    from detectron2.structures import BoxMode

    good["bbox_mode"] = BoxMode.XYXY_ABS
    path.write_bytes(pickle.dumps(good))
    (d,) = load_proposals_into_dataset([{"image_id": 0}], str(path), check_images=False)
    assert d["proposal_objectness_logits"].tolist() == [0.9, 0.1]


def crafted_checkpoint(path, flag, model):
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "iteration": 3, "x": Payload(flag)}, buffer)
    path.write_bytes(buffer.getvalue())


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    """load_trained_weights (predict, export, KD, stage 2), MODEL.WEIGHTS at the start of
    training and --resume's last checkpoint all read tensors and plain data only."""
    model = build_model(tiny_cfg())
    flag = tmp_path / "ran"
    crafted = tmp_path / "model_final.pth"
    crafted_checkpoint(crafted, flag, model)
    with pytest.raises(ValueError, match="model_final.pth' holds more than tensors .* refused"):
        load_trained_weights(model, str(crafted))

    def checkpointer():  # (detectron2's is not reusable after a failed load)
        return FiniteCheckpointer(model, str(tmp_path))

    with pytest.raises(ValueError, match="model_final.pth holds more than tensors"):
        checkpointer().resume_or_load(str(crafted), resume=False)
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(UnreadableCheckpointError):  # the only checkpoint: nothing to resume
        checkpointer().resume_or_load("", resume=True)
    assert not flag.exists()
    # a detectron2 model-zoo .pkl (NumPy arrays) still loads, as plain data
    zoo = tmp_path / "zoo.pkl"
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    zoo.write_bytes(pickle.dumps({"model": arrays, "__author__": "test"}, protocol=2))
    checkpointer().resume_or_load(str(zoo), resume=False)
    evil_zoo = tmp_path / "evil.pkl"
    evil_zoo.write_bytes(pickle.dumps({"model": {"a": Payload(flag)}, "__author__": "x"}))
    with pytest.raises(ValueError, match="evil.pkl: it asks for io.open"):
        checkpointer().resume_or_load(str(evil_zoo), resume=False)
    assert not flag.exists()


class SystemPayload:
    """Unpickled, it would run a shell command that creates the file ``flag``."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def test_a_checkpoint_calling_a_blocked_module_is_refused_not_called_cut(tmp_path):
    """torch words this refusal "unsupported GLOBAL posix.system whose module posix is
    blocked": the message names the global, never "cut short"."""
    model = build_model(tiny_cfg())
    flag = tmp_path / "ran"
    crafted = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), "x": SystemPayload(flag)}, str(crafted))
    with pytest.raises(ValueError, match=r"more than tensors .*the global posix\.system"):
        load_trained_weights(model, str(crafted))
    with pytest.raises(ValueError, match=r"more than tensors .*the global posix\.system"):
        FiniteCheckpointer(model, str(tmp_path)).resume_or_load(str(crafted), resume=False)
    assert not flag.exists()


def test_a_config_alias_bomb_a_base_loop_or_utf16_is_refused_naming_the_file(tmp_path):
    """An alias bomb (a few lines; walking it would hang), in a config or in a _BASE_ of it; a
    _BASE_ naming itself; a config saved as UTF-16: one ValueError naming the file."""
    bomb = tmp_path / "bomb.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefg", "bcdefgh")]
    bomb.write_text(f"_BASE_: {ROOT}/configs/Synthetic/S-Cls.yaml\n" + "\n".join(lines) + "\n")
    (tmp_path / "child.yaml").write_text("_BASE_: bomb.yaml\n")
    (tmp_path / "loop.yaml").write_text("_BASE_: loop.yaml\n")
    (tmp_path / "utf16.yaml").write_text("SEED: 3\n", encoding="utf-16")
    for name, message in [
        ("bomb.yaml", "bomb.yaml: its aliases .*an alias bomb"),
        ("child.yaml", "bomb.yaml: its aliases .*an alias bomb"),
        ("loop.yaml", "loop.yaml is a base of itself"),
        ("utf16.yaml", "utf16.yaml: not UTF-8 text"),
    ]:
        with pytest.raises(ValueError, match=message):
            setup_cfg(str(tmp_path / name))


def test_a_config_that_runs_code_is_refused(tmp_path):
    flag = tmp_path / "ran"
    tag = f"!!python/object/apply:os.system ['touch {flag}']"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_BASE_: {ROOT}/configs/Synthetic/T-WDet.yaml\nSEED: {tag}\n")
    with pytest.raises(ValueError, match="bad.yaml .* is not a plain YAML config.*refused"):
        setup_cfg(str(bad))
    base = tmp_path / "child.yaml"
    base.write_text(f"_BASE_: {bad}\n")
    with pytest.raises(ValueError, match="child.yaml \\(or a _BASE_ of it\\) is not a plain"):
        setup_cfg(str(base))
    student = setup_cfg(os.path.join(ROOT, "configs", "Synthetic", "S-Cls_KD.yaml"))
    student.MODEL.DISTILL.TEACHER_CONFIG = str(bad)
    with pytest.raises(ValueError, match="is not a plain YAML config"):
        get_teacher_cfg(student)
    assert not flag.exists()
    (tmp_path / "text.yaml").write_text("just words\n")
    with pytest.raises(ValueError, match="text.yaml .* is not a YAML mapping of config keys"):
        setup_cfg(str(tmp_path / "text.yaml"))
    shutil.copy(os.path.join(ROOT, "configs", "OwnData", "T-WDet.yaml"), tmp_path)  # alone
    with pytest.raises(FileNotFoundError, match="T-WDet.yaml: its _BASE_ .* does not exist"):
        setup_cfg(str(tmp_path / "T-WDet.yaml"))


def test_pictures_stay_in_their_folder_and_links_are_not_followed(tmp_path):
    """A listed image "../x.jpg" or "/abs/y.png" gets a picture inside the output folder; a
    link planted where a picture goes is replaced, its target left as it was."""
    from wsd_distill.visualization import picture_names, write_picture

    names = picture_names(["../../x.jpg", "/etc/y.png", "sub/z.jpg", "x.jpg", "a/../../w.jpg"])
    assert names == ["x.jpg.jpg", "y.png.jpg", "sub/z.jpg.jpg", "x.jpg_2.jpg", "w.jpg.jpg"]
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "pictures"
    out.mkdir()
    (out / "x.jpg.jpg").symlink_to(target)
    write_picture(str(out / "x.jpg.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert target.read_text() == "keep me" and not (out / "x.jpg.jpg").is_symlink()
    with pytest.raises(OSError, match="Cannot encode the picture"):
        write_picture(str(out / "empty.jpg"), np.zeros((0, 8, 3), np.uint8))


def test_a_file_write_never_follows_a_link(tmp_path):
    """atomic_write_bytes, the one way the tools write a file: a link planted at its temporary
    name is refused, naming it, and the linked file is left as it was; a link at the file's own
    name is replaced by the file, its target untouched."""
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / f".log.txt.tmp-{os.getpid()}").symlink_to(target)
    with pytest.raises(FileExistsError, match=r"\.log\.txt\.tmp-\d+ exists \(a link"):
        atomic_write_bytes(str(out / "log.txt"), b"new")
    (out / "config.yaml").symlink_to(target)
    atomic_write_bytes(str(out / "config.yaml"), b"new")
    assert target.read_text() == "keep me" and not (out / "log.txt").exists()
    assert not (out / "config.yaml").is_symlink() and (out / "config.yaml").read_bytes() == b"new"


def test_a_folder_a_tool_writes_into_that_holds_a_link_is_refused(tmp_path):
    """A link anywhere in an output folder (a sub-folder of predict's pictures, a run's eval
    folder, its log.txt) or at a job's ``.partial`` folder: refused, naming it, before anything
    is written; the folder itself may be a link (the user named it)."""
    from wsd_distill.utils import refuse_links
    from wsd_distill.utils.partial_run import lock_folder, open_partial_run

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    (run / "inference").mkdir(parents=True)
    refuse_links(str(run))  # nothing linked: fine
    (tmp_path / "named").symlink_to(run, target_is_directory=True)
    refuse_links(str(tmp_path / "named"))
    (run / "inference" / "eval").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=r"run/inference/eval is a symbolic link \(to .*"):
        refuse_links(str(run))
    with pytest.raises(ValueError, match=r"inference/eval is a symbolic link"):
        lock_folder(str(run))
    assert not (run / "lock").exists() and not os.listdir(elsewhere)
    (tmp_path / "scores.csv.partial").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=r"scores.csv.partial is a symbolic link"):
        open_partial_run(str(tmp_path / "scores.csv"), {}, 4, 2)
    assert not os.listdir(elsewhere)


def test_a_store_replaces_only_a_store(tmp_path):
    """The proposal store and the teacher cache replace a store of theirs at their path, never
    a file, a folder or a link that is not one: refused, naming it, and left as it was."""
    fields = {"boxes": ("float32", (4,))}
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("keep")
    (tmp_path / "file").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    for name in ("folder", "file", "link"):
        with pytest.raises(FileExistsError, match=f"{name} exists and is not a store"):
            RaggedStoreWriter(str(tmp_path / name), fields)
    assert (tmp_path / "file").read_text() == "keep"
    assert (tmp_path / "folder" / "notes.txt").read_text() == "keep"
    for _ in range(2):  # a store is replaced by a new one
        with RaggedStoreWriter(str(tmp_path / "store"), fields) as writer:
            writer.append("a", boxes=np.zeros((1, 4), np.float32))
