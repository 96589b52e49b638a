"""What ``tools/train_net.py`` and the pipeline refuse before they train in a run folder: one
made with other settings or on edited training data, which they would otherwise reuse or resume
as it is, and one that another process trains in or that a new run would overwrite."""

import json
import os

import yaml
from detectron2.data import DatasetCatalog

from ..utils import atomic_write_bytes
from ..utils.digests import ids_digest, photo_sha1
from ..utils.partial_run import lock_folder
from ..utils.plain_files import load_plain_yaml
from .defaults import RUN_CONFIG, RUN_WEIGHTS

# config keys that may differ between a run and its resumption: where it computes and where its
# files lie, not what it computes (its training sets are compared by their images and labels)
RESUMABLE_KEYS = ("OUTPUT_DIR", "MODEL.DEVICE", "DATALOADER.NUM_WORKERS", "DATASETS.REGISTER")


def flat_config(node):
    """{"A.B.C": value} of a config as nested dicts."""

    def items(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from items(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(items(node, ""))


def read_flat_config(path):
    """``flat_config`` of the config file ``path`` (a run's config.yaml), read as plain YAML;
    a file that is not a mapping of keys is a ValueError naming it."""
    node = load_plain_yaml(path)
    if not isinstance(node, dict):
        raise ValueError(f"{path}: not a config (a YAML mapping of config keys)")
    return flat_config(node)


def training_sets_digest(cfg):
    """{training set: ``dataset_digest``}: tells a dataset whose images, labels or photos
    were edited since a run from the one it was trained on."""
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
        before = read_flat_config(config_file)
        now = flat_config(yaml.safe_load(cfg.dump()))
        changed = [
            f"{k}: {before[k]!r} there, {now[k]!r} now"
            for k in before
            if k in now and before[k] != now[k] and k not in RESUMABLE_KEYS
        ]
        if os.path.exists(datasets_file):
            with open(datasets_file) as f:
                trained_on = json.load(f)
            changed += [
                f"the images, labels or photos of '{name}' (changed since)"
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
        recorded = read_flat_config(config_file).get("SEED", -1)
        if isinstance(recorded, int) and recorded >= 0:
            return recorded
    return int.from_bytes(os.urandom(4), "little") % 2**31


def dataset_digest(name):
    """SHA-1 of a dataset's image ids, labels and photos' bytes: tells it from an edited or
    other dataset, photos rewritten in place or another collection under the same names."""
    return ids_digest(
        f"{d['image_id']}\t{sorted(d['multi_labels'])}\t{photo_sha1(d['file_name'])}"
        for d in DatasetCatalog.get(name)
    )
