"""What the pipeline (``tools/distill.py``) and ``tools/train_net.py`` refuse
before they train: held-out splits that share images with the training set, run folders made
with other settings, which they would otherwise reuse or resume as they are, and a run folder
that another process trains in or that a new run would overwrite."""

import json
import os

import yaml
from detectron2.data import DatasetCatalog

from ..data.teacher_cache import file_sha1
from ..utils import atomic_write_bytes
from ..utils.partial_run import ids_digest, lock_folder
from .defaults import RUN_CONFIG, RUN_WEIGHTS

# config keys that may differ between a run and its resumption: where it computes and where its
# files lie, not what it computes (its training sets are compared by their images and labels)
RESUMABLE_KEYS = ("OUTPUT_DIR", "MODEL.DEVICE", "DATALOADER.NUM_WORKERS", "DATASETS.REGISTER")


def flat_config(text):
    """{"A.B.C": value} of a config dumped as YAML."""

    def items(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from items(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(items(yaml.safe_load(text), ""))


def training_sets_digest(cfg):
    """{training set: SHA-1 of its image ids and labels}: tells a dataset whose images or
    labels were edited since a run from the one it was trained on."""
    return {name: dataset_digest(name) for name in cfg.DATASETS.TRAIN}


def check_run_settings(cfg):
    """Refuse to reuse or resume the run in ``cfg.OUTPUT_DIR`` when it was started with another
    config (its config.yaml; keys it lacks, added since, are not compared, nor
    ``RESUMABLE_KEYS``) or on training images or labels that have changed since (its
    datasets.json): its models would silently be another config's. A run without datasets.json
    gets it."""
    config_file = os.path.join(cfg.OUTPUT_DIR, RUN_CONFIG)
    datasets_file = os.path.join(cfg.OUTPUT_DIR, "datasets.json")
    datasets = training_sets_digest(cfg)
    if os.path.exists(config_file):
        with open(config_file) as f:
            before = flat_config(f.read())
        now = flat_config(cfg.dump())
        changed = [
            f"{k}: {before[k]!r} there, {now[k]!r} now"
            for k in before
            if k in now and before[k] != now[k] and k not in RESUMABLE_KEYS
        ]
        if os.path.exists(datasets_file):
            with open(datasets_file) as f:
                trained_on = json.load(f)
            changed += [
                f"the images or labels of '{name}' (changed since)"
                for name, digest in datasets.items()
                if trained_on.get(name, digest) != digest
            ]
        if changed:
            raise ValueError(
                f"{cfg.OUTPUT_DIR} was trained with other settings:\n  "
                + "\n  ".join(changed[:10])
                + f"\nDelete {cfg.OUTPUT_DIR} (and the runs made from it) to train it again, or "
                "give another --output"
            )
    if not os.path.exists(datasets_file):
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        atomic_write_bytes(datasets_file, json.dumps(datasets, indent=1).encode())


def claim_output_dir(cfg, resume):
    """Before ``tools/train_net.py`` trains into ``cfg.OUTPUT_DIR``: a run there (its
    ``model_final.pth`` or ``last_checkpoint``) is kept unless ``resume``, and resumed only when
    its settings are these (``check_run_settings``); one process at a time trains there (its
    ``lock`` file, ``lock_folder``). Returns the lock file's path."""
    output = cfg.OUTPUT_DIR
    found = [f for f in (RUN_WEIGHTS, "last_checkpoint") if os.path.exists(f"{output}/{f}")]
    if found and not resume:
        state = "finished" if found[0] == RUN_WEIGHTS else "started"
        raise ValueError(
            f"{output} holds a {state} run ({found[0]}): add --resume to continue it (a "
            "finished one is evaluated again), give another OUTPUT_DIR, or delete the folder "
            "to train it again"
        )
    lock = lock_folder(output)
    if found:
        check_run_settings(cfg)
    return lock


def run_seed(cfg):
    """The seed of a run in ``cfg.OUTPUT_DIR`` whose ``SEED`` is negative (detectron2's "draw
    one"): the one its config.yaml recorded when it started, or a new draw for a new run, so
    that ``--resume`` continues the same data stream."""
    config_file = os.path.join(cfg.OUTPUT_DIR, RUN_CONFIG)
    if os.path.exists(config_file):
        with open(config_file) as f:
            recorded = flat_config(f.read()).get("SEED", -1)
        if isinstance(recorded, int) and recorded >= 0:
            return recorded
    return int.from_bytes(os.urandom(4), "little") % 2**31


def dataset_digest(name):
    """SHA-1 of a dataset's image ids and labels: tells it from an edited or other dataset."""
    return ids_digest(
        f"{d['image_id']}\t{sorted(d['multi_labels'])}" for d in DatasetCatalog.get(name)
    )


def check_held_out(train, val, test):
    """Refuse held-out datasets that are, or share image files with, the training set or each
    other: the numbers would be the training set's, or the student chosen on val would be
    chosen on the test set."""
    if val and val == test:
        raise ValueError(
            f"'{val}' is both --val and --test: the student chosen on val would be chosen on "
            f"the test set; give a held-out split of its own"
        )
    files = {
        name: {os.path.realpath(d["file_name"]): d["file_name"] for d in DatasetCatalog.get(name)}
        for name in filter(None, (train, val, test))
    }
    pairs = [(train, val, "the training set"), (train, test, "the training set")]
    pairs.append((val, test, "the val split (the student would be chosen on test images)"))
    for first, second, what in pairs:
        if not first or not second:
            continue
        shared = [files[second][f] for f in files[second] if f in files[first]]
        if shared:
            raise ValueError(
                f"Dataset '{second}' shares {len(shared)} image files with {what} '{first}' "
                f"({', '.join(shared[:3])}, ...): a held-out split must hold other images"
            )


def check_unlabeled_held_out(unlabeled, held_out):
    """Refuse unlabeled images (the dataset ``unlabeled``) that are, by their bytes, images of
    the held-out datasets ``held_out`` (names): the student would distil on its val or test
    photos under another name."""
    digests = {}
    for name in filter(None, held_out):
        for d in DatasetCatalog.get(name):
            digests.setdefault(file_sha1(d["file_name"]), (name, d["file_name"]))
    shared = [
        (d["file_name"], *digests[key])
        for d in DatasetCatalog.get(unlabeled)
        if (key := file_sha1(d["file_name"])) in digests
    ]
    if shared:
        photo, name, copy = shared[0]
        raise ValueError(
            f"Unlabeled dataset '{unlabeled}': {photo} is {copy} of '{name}' (the same bytes), "
            f"and {len(shared) - 1} more: photos of a held-out split cannot be trained on"
        )
