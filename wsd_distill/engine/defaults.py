"""The config set-up every wsd-distill tool shares."""

import argparse
import logging
import os
import re
import sys

import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY

from ..config import add_wsd_distill_config, check_config, merge_config_file, unknown_key_error
from ..data.build import thing_classes_of
from ..data.datasets import register_declared_datasets
from ..modeling import WSDDN, StudentClassifier
from ..modeling.backbone.timm_backbone import fill_pretrained_normalization
from ..utils.partial_run import OutputInUse

# the config node of each meta-architecture (and of its subclasses)
MODEL_KEYS = ((WSDDN, "MODEL.ROI_HEADS"), (StudentClassifier, "MODEL.STUDENT"))

RUN_CONFIG, RUN_WEIGHTS = "config.yaml", "model_final.pth"  # what a run leaves in OUTPUT_DIR
CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")  # MODEL.WEIGHTS, SOLVER.MAX_ITER


def setup_cfg(config_file, opts=(), datasets=True):
    """detectron2's config with wsd-distill's keys, ``config_file`` (if not "") and the ``opts``
    overrides merged in (not frozen): run folders named by weight keys resolved
    (``resolve_run_folders``), the datasets of ``DATASETS.REGISTER`` registered, the class
    names filled in (``fill_class_names``), and checked (``check_config``); on a machine
    without CUDA, a config naming a CUDA device runs on the CPU. ``datasets`` False (a tool
    that reads no dataset: predict, export) registers them only for a config that names no
    classes, so that a run folder works without its training files."""
    cfg = add_wsd_distill_config(get_cfg())
    if config_file:
        merge_config_file(cfg, config_file)
    merge_overrides(cfg, opts)
    resolve_run_folders(cfg)
    if datasets or not cfg.MODEL.CLASS_NAMES:
        register_declared_datasets(cfg.DATASETS.REGISTER)
    fill_class_names(cfg)
    fill_pretrained_normalization(cfg)
    check_config(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def merge_overrides(cfg, opts):
    """Merge command-line ``KEY VALUE`` pairs, refusing an option (``--x``) among them or a key
    without its value with a message that says so (detectron2: "odd length")."""
    opts = list(opts)
    flags = [o for o in opts[::2] if isinstance(o, str) and o.startswith("--")]
    if flags:
        raise ValueError(
            f"{flags[0]} comes after the config overrides (KEY VALUE pairs): put the options "
            "before them"
        )
    if len(opts) % 2:
        raise ValueError(f"The config override {opts[-1]} has no value (KEY VALUE pairs)")
    try:
        cfg.merge_from_list(opts)
    except AssertionError as e:  # (yacs: "Non-existent key: X")
        if not str(e).startswith("Non-existent key: "):
            raise
        raise unknown_key_error(str(e).partition(": ")[2], "the config overrides") from None


def run_files(path):
    """(config file, trained weights or "") of ``path``: a run folder (a finished run's
    OUTPUT_DIR, with config.yaml and model_final.pth), a run's config.yaml (the weights beside
    it) or any other config file (no weights)."""
    if os.path.isdir(path):
        config, weights = os.path.join(path, RUN_CONFIG), os.path.join(path, RUN_WEIGHTS)
        if not os.path.isfile(config):
            raise FileNotFoundError(f"{path} is a folder without {RUN_CONFIG}: not a run folder")
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"Run folder {path} has no {RUN_WEIGHTS}: its training has not finished "
                f"(resume it with the same command, or name a checkpoint as MODEL.WEIGHTS)"
            )
        return config, weights
    weights = os.path.join(os.path.dirname(path), RUN_WEIGHTS)
    if os.path.basename(path) == RUN_CONFIG and os.path.isfile(weights):
        return path, weights
    return path, ""


def setup_run_cfg(path, opts=(), datasets=True):
    """``setup_cfg`` for a trained model: ``path`` a run folder, its config.yaml or a config
    file; MODEL.WEIGHTS is the run's model_final.pth unless ``opts`` set it."""
    config, weights = run_files(path)
    return setup_cfg(config, ["MODEL.WEIGHTS", weights, *opts] if weights else opts, datasets)


def resolve_run_folders(cfg):
    """Keys naming a trained model accept its run folder: MODEL.WEIGHTS and
    MODEL.DISTILL.TEACHER_WEIGHTS (its model_final.pth), MODEL.DISTILL.TEACHER_CONFIG (its
    config.yaml; and TEACHER_WEIGHTS becomes its model_final.pth unless they name a checkpoint
    in that folder)."""
    d = cfg.MODEL.DISTILL
    if d.TEACHER_CONFIG and os.path.exists(d.TEACHER_CONFIG):
        d.TEACHER_CONFIG, weights = run_files(d.TEACHER_CONFIG)
        run = os.path.dirname(os.path.abspath(d.TEACHER_CONFIG))
        if weights and os.path.dirname(os.path.abspath(d.TEACHER_WEIGHTS or ".")) != run:
            if d.TEACHER_WEIGHTS and os.path.abspath(d.TEACHER_WEIGHTS) != weights:
                logging.getLogger(__name__).warning(
                    f"MODEL.DISTILL.TEACHER_WEIGHTS {d.TEACHER_WEIGHTS} is replaced by {weights}: "
                    f"MODEL.DISTILL.TEACHER_CONFIG names the run folder {run} (name a checkpoint "
                    f"in that folder to use another)"
                )
            d.TEACHER_WEIGHTS = weights
    for node, key in ((cfg.MODEL, "WEIGHTS"), (d, "TEACHER_WEIGHTS")):
        if node[key] and os.path.isdir(node[key]):
            node[key] = run_files(node[key])[1]


def fill_class_names(cfg):
    """``MODEL.CLASS_NAMES``, if empty, from the training set's ``thing_classes`` (left empty
    when DATASETS.TRAIN names no registered dataset with classes); a ``NUM_CLASSES`` of 0
    becomes their count. A count that differs from the names, or a name given to two classes,
    is an error."""
    train = next((n for n in cfg.DATASETS.TRAIN if n not in cfg.DATASETS.UNLABELED), None)
    if not cfg.MODEL.CLASS_NAMES and train in DatasetCatalog:
        try:
            cfg.MODEL.CLASS_NAMES = thing_classes_of(train)
        except KeyError:  # registered without class names: the loaders will say so
            pass
    names = cfg.MODEL.CLASS_NAMES
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # (the evaluation's AP-<name> of one would overwrite the other's)
        raise ValueError(
            f"MODEL.CLASS_NAMES (of {train or 'the config'}) repeats {repeated}: each class "
            "needs a name of its own"
        )
    for model in ("ROI_HEADS", "STUDENT"):
        if cfg.MODEL[model].NUM_CLASSES == 0 and not names:
            raise ValueError(
                f"MODEL.{model}.NUM_CLASSES is 0 (the training set's class count) but "
                f"DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} names no registered dataset with "
                f"class names: declare it (DATASETS.REGISTER) or set MODEL.CLASS_NAMES"
            )
        if cfg.MODEL[model].NUM_CLASSES == 0:
            cfg.MODEL[model].NUM_CLASSES = len(names)
    architecture = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)  # (a subclass counts)
    model_key = next((key for cls, key in MODEL_KEYS if issubclass(architecture, cls)), None)
    count = cfg.MODEL[model_key.split(".")[1]].NUM_CLASSES if model_key else len(names)
    if names and count != len(names):
        raise ValueError(
            f"{model_key}.NUM_CLASSES is {count} but MODEL.CLASS_NAMES has {len(names)} names "
            f"(from {'DATASETS.TRAIN ' + repr(train) if train else 'the config'}): set "
            f"{model_key}.NUM_CLASSES to {len(names)}, or 0 to follow the names"
        )


def model_class_names(cfg):
    """The names of the model's K outputs: MODEL.CLASS_NAMES, else those of the first dataset
    of DATASETS.TEST or DATASETS.TRAIN."""
    if cfg.MODEL.CLASS_NAMES:
        return list(cfg.MODEL.CLASS_NAMES)
    datasets = [*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN]
    if not datasets:
        raise ValueError(
            "The config names no classes: set MODEL.CLASS_NAMES, or DATASETS.TRAIN (a run's "
            "config.yaml names them)"
        )
    return thing_classes_of(datasets[0])


def positive_int(text):
    """An argparse type: an integer >= 1 (a count of images, proposals, steps)."""
    return _int_at_least(text, 1)


def non_negative_int(text):
    """An argparse type: an integer >= 0 (a count of worker processes)."""
    return _int_at_least(text, 0)


def positive_float(text):
    """An argparse type: a finite number > 0 (epochs, minutes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def parse_args_with_overrides(parser, list_options, argv=None):
    """``parser.parse_args(argv)`` for a tool whose options ``list_options`` (a name or a
    tuple of names, each ``nargs="+"``) may come just before the trailing ``KEY VALUE``
    overrides (``opts``): argparse gives those to the list (``--input photos/ MODEL.DEVICE
    cpu`` would be three inputs); from the first item that is a config key on, they go back to
    ``opts``."""
    args = parser.parse_args(argv)
    for option in (list_options,) if isinstance(list_options, str) else list_options:
        values = getattr(args, option, None) or []  # (a tool may lack one of them)
        k = next((i for i, v in enumerate(values) if CONFIG_KEY.fullmatch(str(v))), len(values))
        flag = f"--{option.replace('_', '-')}"
        if k == 0 and values:
            parser.error(f"{flag}: expected a value before {values[0]}")
        if k < len(values):
            setattr(args, option, values[:k])
            args.opts = values[k:] + args.opts
    return args


def add_dataset_config_arguments(parser):
    """``--config-file`` and trailing ``KEY VALUE`` overrides for a tool that reads datasets by
    name, so that it sees those a config declares (``DATASETS.REGISTER``); see ``setup_cfg``."""
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="a config whose DATASETS.REGISTER declares the datasets (optional)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides, e.g. DATASETS.REGISTER \"[['mine', 'train.json', 'images']]\"",
    )


def _not_fx_tracing_notice(record):
    return not record.getMessage().startswith("is_fx_tracing will return true")


def run_tool(main, *args, resume="the same command continues where it stopped"):
    """``main(*args)`` of a command-line tool: a refusal of the user's input (a ValueError or
    KeyError, which name the file, key or image; an OSError, which names its file: missing,
    unwritable, a full disk; an output in use) is one message on stderr and exit status 2, as
    argparse's errors, not a traceback
    (WSD_DISTILL_TRACEBACK=1 shows it); Ctrl-C says how to go on (``resume``; "" for a tool
    that keeps nothing). Returns what ``main`` returns. The tool's process drops torch.fx's
    notice at each ``is_fx_tracing()`` call of detectron2 0.7's ROIPooler under torch 2.14,
    which says nothing to a user (the library leaves a user's own process as it is)."""
    tool = os.path.basename(sys.argv[0])
    logging.getLogger("torch.fx._symbolic_trace").addFilter(_not_fx_tracing_notice)
    try:
        return main(*args)
    except (ValueError, KeyError, OSError, OutputInUse) as e:
        if os.environ.get("WSD_DISTILL_TRACEBACK"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        sys.stderr.write(f"{tool}: error: {message}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{tool}: stopped{': ' + resume if resume else ''}\n")
        sys.exit(130)
