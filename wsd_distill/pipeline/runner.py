"""The method on one dataset, from images with labels to a distilled student: proposals, the
teacher T-WDet, the student S-Cls without KD, S-Cls with KD, and the paper's Table 3 for them
(``tools/distill.py``, on a user's data or the synthetic benchmark).

Runs go to ``<output>/seed<k>/<run>`` (teacher, student, student_kd_stage1, ...), each with
its config.yaml, model_final.pth and results.json; a run whose results exist is skipped and an
interrupted one resumes from its last checkpoint, so a stopped pipeline continues where it
stopped when started again with the same arguments.
"""

import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
from detectron2.data import DatasetCatalog
from filelock import FileLock
from tabulate import tabulate

from ..box_proposers.generate import generate_proposal_file
from ..checkpoint import load_trained_weights
from ..checkpoint.checkpointer import readable
from ..data import load_proposals_into_dataset, thing_classes_of
from ..data.build import check_dataset_dicts
from ..data.datasets import prepare_synthetic_shapes
from ..data.proposals import open_proposal_store
from ..data.statistics import dataset_summary, proposal_recall
from ..engine import Trainer, setup_cfg
from ..engine.defaults import RUN_CONFIG, RUN_WEIGHTS
from ..engine.run_folders import check_run_settings, dataset_digest, read_flat_config
from ..engine.teacher_cache_writer import write_teacher_cache
from ..engine.trainer import unwrap
from ..evaluation.multilabel import bootstrap_map, chance_map
from ..modeling import WSDDN
from ..modeling.class_count import check_class_order
from ..utils import atomic_write_bytes, refuse_links
from ..utils.partial_run import lock_folder
from ..visualization import plot_ap_gain, visualize_teacher
from .arguments import schedule_option_text
from .budget import Budget
from .checks import check_held_out, check_unlabeled_held_out
from .report import CHOSEN, PLAIN, TEACHER, gain_row, kd_row, results_tables, summarize
from .schedule import (
    plan_table,
    random_teacher,
    scale_schedule,
    schedule_epochs,
    time_per_iteration,
)

logger = logging.getLogger(__name__)

# The config files of a pipeline's config folder (configs/Synthetic, configs/OwnData, ...).
CONFIG_FILES = {
    "teacher": "T-WDet.yaml",
    "student": "S-Cls.yaml",
    "kd_joint": "S-Cls_KD.yaml",
    "kd_stage1": "S-Cls_KD_stage1.yaml",
    "kd_stage2": "S-Cls_KD_stage2.yaml",
}
# A plan's training is timed when that costs at most TIMING_SHARE of its iterations (each
# model: TIMED_ITERATIONS, after two untimed ones), or for a --budget.
TIMING_SHARE, TIMED_ITERATIONS = 0.05, 3
# A plan that gives the plain student fewer passes over the training set than this is said, with
# what to do: it learns little (the near-chance warning would say so only after training).
MIN_USEFUL_EPOCHS = 1.0


def teacher_options(folder):
    """The config overrides of a KD student of the teacher run ``folder``: its files, not the
    folder, which is a run folder only once the teacher has finished (a plan made while it
    trains, by a resumed pipeline, sizes the KD runs with these too)."""
    config, weights = (os.path.join(folder, f) for f in (RUN_CONFIG, RUN_WEIGHTS))
    return ["MODEL.DISTILL.TEACHER_CONFIG", config, "MODEL.DISTILL.TEACHER_WEIGHTS", weights]


def train_and_evaluate(cfg):
    """Train (resuming from the last checkpoint of ``cfg.OUTPUT_DIR``, the config saved there
    as config.yaml; ``check_run_settings`` first), then evaluate on ``DATASETS.TEST`` ({}
    without test sets); the results are kept in ``results.json`` and returned, and evaluated
    again when a test set's images or labels have changed since (test_sets.json holds their
    digests). The evaluated weights are those of the run's model_final.pth as every tool loads
    them. A run folder another live process holds (its
    ``lock``: another pipeline, tools/train_net.py) is refused, naming the process."""
    lock = lock_folder(cfg.OUTPUT_DIR)  # one process at a time, as train_net.py's
    try:
        check_run_settings(cfg)
        results_file = os.path.join(cfg.OUTPUT_DIR, "results.json")
        tests_file = os.path.join(cfg.OUTPUT_DIR, "test_sets.json")
        test_sets = {name: dataset_digest(name) for name in cfg.DATASETS.TEST}
        if os.path.exists(results_file):
            tested_on = test_sets
            if os.path.exists(tests_file):
                with open(tests_file) as f:
                    tested_on = json.load(f)
            if tested_on == test_sets:
                with open(results_file) as f:
                    return json.load(f)
            logger.info(
                f"{cfg.OUTPUT_DIR}: evaluated again (a test set's images or labels changed)"
            )
            model = Trainer.build_model(cfg)
        else:
            atomic_write_bytes(os.path.join(cfg.OUTPUT_DIR, RUN_CONFIG), cfg.dump().encode())
            train_cfg = cfg.clone()
            train_cfg.DATASETS.TEST = ()  # evaluated once, below, rather than by the EvalHook too
            trainer = Trainer(train_cfg)
            trainer.resume_or_load(resume=True)
            trainer.train()
            model = trainer.model
        results = {}
        if cfg.DATASETS.TEST:  # what the run leaves for the next step: model_final.pth
            load_trained_weights(unwrap(model), os.path.join(cfg.OUTPUT_DIR, RUN_WEIGHTS))
            results = Trainer.test(cfg, model)
        atomic_write_bytes(results_file, json.dumps(results, indent=1).encode())
        atomic_write_bytes(tests_file, json.dumps(test_sets, indent=1).encode())
        return results
    finally:
        os.remove(lock)


class Pipeline:
    """Proposals, teacher, students and Table 3 on the datasets ``train`` (training), ``test``
    (the table) and ``val`` (held out: the student to deploy is chosen on it; "" for none),
    with the five configs of ``config_dir`` (``CONFIG_FILES``) and the config overrides
    ``opts`` for every run. Proposals (``method``, ``max_proposals`` per image, on
    images downscaled to ``max_side`` pixels at most (None: the method's default),
    ``workers`` processes) are kept in ``proposals_dir/<dataset>_<method>``. The test mAPs'
    bootstrap intervals count the classes with ``min_test_positives`` positive test images.
    With ``teacher_cache``, the KD students started from now on read the teacher's targets
    from <output>/seed<k>/teacher_cache (made first), not from the teacher at every step.
    ``plan_schedules`` sizes every run's schedule (``epochs`` or a ``budget`` in minutes) and
    estimates the training time; each run started then logs its estimate and what is left."""

    def __init__(
        self,
        config_dir,
        output,
        train,
        test,
        val="",
        proposals_dir="output/proposals",
        method="edge_boxes",
        max_proposals=500,
        max_side=None,
        workers=1,
        opts=(),
        min_test_positives=1,
        teacher_cache=False,
        epochs=None,
        budget=None,
        unlabeled="",
    ):
        missing = [f for f in CONFIG_FILES.values() if not os.path.isfile(f"{config_dir}/{f}")]
        if missing:
            raise FileNotFoundError(f"Config folder {config_dir} lacks {', '.join(missing)}")
        self.config_dir, self.output = config_dir, output
        self.train, self.test, self.val, self.unlabeled = train, test, val, unlabeled
        self.proposals_dir, self.method, self.max_proposals = proposals_dir, method, max_proposals
        self.max_side = max_side
        self.workers, self.opts = workers, list(opts)
        self.min_test_positives, self.teacher_cache = min_test_positives, teacher_cache
        self.epochs, self.budget, self.schedule_factor = epochs, budget, 1.0
        self.planned_minutes = {}  # {run folder: its training's minutes}, of plan_schedules
        self.started, self.budget_plan = time.monotonic(), None  # (a Budget, with --budget)
        setup_cfg("", self.opts)  # registers the declared datasets
        for name in filter(None, (train, val, test, unlabeled)):
            if name not in DatasetCatalog:
                raise KeyError(
                    f"Dataset '{name}' is not registered: declare it with DATASETS.REGISTER "
                    f"(see datasets/README.md) or use a builtin name"
                )
        if train in (val, test):
            raise ValueError(f"'{train}' is the training set: --val and --test must be others")
        check_held_out(train, val, test)
        refuse_links(output)  # (its run folders, pictures, tables)
        if unlabeled:
            if unlabeled in (train, val, test):
                raise ValueError(f"--unlabeled '{unlabeled}' is also --train, --val or --test")
            check_unlabeled_held_out(unlabeled, (val, test))
        self.check_before_proposals()

    def check_before_proposals(self):
        """What would otherwise stop the pipeline after its proposals or its teacher: the
        configs' pretrained weights there and whole, the val and test classes in the training
        set's order, the folders it writes writable."""
        for name in ("teacher", "student"):
            weights = self.config(name, name, 0).MODEL.WEIGHTS
            where = f"{self.config_dir}/{CONFIG_FILES[name]}: its MODEL.WEIGHTS {weights}"
            if weights and "://" not in weights and not os.path.exists(weights):
                raise FileNotFoundError(
                    f"{where} does not exist: make it first (the config's comment says how, "
                    f"e.g. tools/convert_timm_weights.py), or set MODEL.WEIGHTS"
                )
            problem = weights.endswith((".pth", ".pt")) and readable(weights)
            if problem:
                raise ValueError(f"{where} is {problem}: make it again")
        for name in filter(None, (self.val, self.test)):
            check_class_order(thing_classes_of(self.train), name)
        for folder in (self.output, self.proposals_dir):
            existing = os.path.abspath(folder)
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(f"{folder}: {existing} is not writable by this user")

    @classmethod
    def from_args(cls, config_dir, args, train, test, val="", opts=None):
        """The pipeline of the arguments of ``add_pipeline_arguments`` (``opts``: theirs)."""
        return cls(
            config_dir,
            args.output,
            train=train,
            test=test,
            val=val,
            proposals_dir=args.proposals_dir,
            method=args.method,
            max_proposals=args.max_proposals,
            max_side=args.max_side,
            workers=args.workers,
            opts=args.opts if opts is None else opts,
            min_test_positives=args.min_test_positives,
            teacher_cache=args.teacher_cache,
            epochs=getattr(args, "epochs", None),
            budget=getattr(args, "budget", None),
            unlabeled=getattr(args, "unlabeled", ""),
        )

    @classmethod
    def synthetic(cls, config_dir, args):
        """The pipeline of the synthetic shapes benchmark, generated first unless it exists
        (``prepare_synthetic_shapes``), with the arguments of ``add_pipeline_arguments``."""
        cfg = setup_cfg(os.path.join(config_dir, CONFIG_FILES["teacher"]), args.opts)
        logger.info(f"Synthetic shapes benchmark in {prepare_synthetic_shapes(cfg)}")
        splits = [f"synthetic_shapes_{s}" for s in ("train", "test", "val")]
        return cls.from_args(config_dir, args, *splits)

    @property
    def datasets(self):
        return [n for n in dict.fromkeys((self.train, self.val, self.test, self.unlabeled)) if n]

    def proposal_file(self, dataset):
        return os.path.join(self.proposals_dir, f"{dataset}_{self.method}")

    def make_proposals(self):
        """Each dataset's proposal file, made unless it exists (a store made with other
        settings is refused); returns a table of their boxes
        per image and ground-truth recall (datasets with boxes) as text. Every dataset's
        files are checked first (``check_dataset_dicts``), before any proposal is made."""
        dicts = {name: DatasetCatalog.get(name) for name in self.datasets}
        for name, d in dicts.items():
            check_dataset_dicts(name, d)
        rows = []
        settings = {"max_proposals": self.max_proposals}
        settings |= {"max_side": self.max_side} if self.max_side else {}
        for name in self.datasets:
            output, stats = self.proposal_file(name), None
            if not os.path.exists(output):
                stats = generate_proposal_file(
                    dicts[name], output, self.method, settings, workers=self.workers
                )
            made_with = settings
            if os.path.isdir(output):  # a store (generate_proposal_file's) records its settings
                made_with = open_proposal_store(output).meta.get("generator", settings)
            if made_with != settings:
                raise ValueError(
                    f"{output} holds proposals made with {made_with}, not {settings}: delete it "
                    "(it is made again) or give another --proposals-dir"
                )
            with_proposals = load_proposals_into_dataset(dicts[name], output)
            has_boxes = any(d.get("annotations") for d in with_proposals)
            recall = proposal_recall(with_proposals) if has_boxes else {}
            speed = (
                f"{stats['images_per_s']:.1f} ({stats['images_per_s_per_worker']:.1f})"
                if stats
                else "made before"
            )
            rows.append(
                [
                    name,
                    output,
                    f"{recall.get('boxes_per_image', np.nan):.0f}" if recall else "-",
                    f"{100 * recall['recall@0.5']:.1f}%" if recall else "- (no boxes)",
                    f"{100 * recall['recall@0.7']:.1f}%" if recall else "-",
                    speed,
                ]
            )
        headers = ["dataset", "file", "boxes/img", "GT recall@0.5", "recall@0.7", "images/s"]
        return f"{self.method} proposals ({self.workers} workers):\n" + tabulate(rows, headers)

    def dataset_tables(self):
        """The splits' sizes and label statistics, the training set's class frequencies and
        most co-occurring class pairs, as text; returns (text, the training set's
        ``dataset_summary``)."""
        class_names = thing_classes_of(self.train)
        summaries = {n: dataset_summary(DatasetCatalog.get(n), class_names) for n in self.datasets}
        rows = [
            [
                name,
                s["images"],
                s["unlabeled_images"],
                f"{s['labels_per_image']:.2f}",
                f"{s['objects_per_image']:.2f}" if s.get("objects_per_image") else "-",
                f"{100 * s['small_object_fraction']:.1f}%" if s.get("objects_per_image") else "-",
            ]
            for name, s in summaries.items()
        ]
        headers = [
            "dataset",
            "images",
            "unlabeled",
            "labels/img",
            "objects/img",
            "objects <10% area",
        ]
        train = summaries[self.train]
        freq = train["class_images"] / max(train["images"], 1)
        classes = [
            [class_names[k], train["class_images"][k], f"{100 * freq[k]:.1f}%"]
            for k in np.argsort(-freq, kind="stable")
        ]
        co, n = train["co_occurrence"].astype(float), train["images"]
        lift = co * n / np.maximum(np.outer(np.diag(co), np.diag(co)), 1)
        pairs = sorted(
            ((lift[i, j], i, j) for i in range(len(co)) for j in range(i + 1, len(co))),
            reverse=True,
        )
        pairs = [
            [class_names[i], class_names[j], int(co[i, j]), f"{v:.2f}"]
            for v, i, j in pairs
            if co[i, j] >= 5
        ]
        text = (
            tabulate(rows, headers)
            + f"\n\nClass frequency in {self.train} (images containing the class):\n"
            + tabulate(classes, ["class", "images", "share"])
            + f"\n\nMost co-occurring class pairs in {self.train} "
            + "(lift = P(a, b) / (P(a) P(b))):\n"
            + tabulate(pairs[:6], ["class a", "class b", "images", "lift"])
        )
        for name in filter(None, (self.val, self.test)):
            held_out = summaries[name]["class_images"]
            untaught = [class_names[k] for k in np.flatnonzero((held_out > 0) & (freq == 0))]
            if untaught:
                logger.warning(
                    f"{len(untaught)} classes have positives in {name} and no training photo "
                    f"in {self.train} ({', '.join(untaught[:8])}{', ...' * (len(untaught) > 8)}): "
                    "no model can learn them, their AP is chance; label some training photos"
                )
        return text, train

    def config(self, name, folder, seed, extra=()):
        """The config ``CONFIG_FILES[name]`` of the run ``<output>/seed<seed>/<folder>``."""
        opts = [
            "DATASETS.TRAIN",
            (self.train,),
            "DATASETS.TEST",
            (self.test,),
            "DATASETS.PROPOSAL_FILES_TRAIN",
            (self.proposal_file(self.train),),
            "DATASETS.PROPOSAL_FILES_TEST",
            (self.proposal_file(self.test),) if name == "teacher" else (),
            *self.opts,
            *extra,
            "SEED",
            seed,
        ]
        if name.startswith("kd_") and self.unlabeled:  # (the teacher never sees them)
            opts += [
                *("DATASETS.TRAIN", (self.train, self.unlabeled)),
                "DATASETS.PROPOSAL_FILES_TRAIN",
                tuple(self.proposal_file(n) for n in (self.train, self.unlabeled)),
                *("DATASETS.UNLABELED", (self.unlabeled,)),
            ]
        cfg = setup_cfg(os.path.join(self.config_dir, CONFIG_FILES[name]), opts)
        cfg.OUTPUT_DIR = os.path.join(self.output, f"seed{seed}", folder)
        return scale_schedule(cfg, self.run_factor(cfg.OUTPUT_DIR))

    def run_factor(self, folder):
        """The schedule factor of the run ``folder``: with a budget, the one it started with;
        else the plan's."""
        started = self.budget_plan.factors if self.budget_plan else {}
        return started.get(os.path.relpath(folder, self.output), self.schedule_factor)

    def runs_left(self, seeds, variants):
        """[(config name, run folder)] of the runs of ``seeds`` and ``variants`` that have
        not finished (no results.json)."""
        runs = {}
        for seed in seeds:
            runs[f"seed{seed}/teacher"], runs[f"seed{seed}/student"] = "teacher", "student"
            for schedule in variants:
                stages = ["kd_joint"] if schedule == "joint" else ["kd_stage1", "kd_stage2"]
                runs.update({f"seed{seed}/student_kd_{stage[3:]}": stage for stage in stages})
        runs = [(name, os.path.join(self.output, folder)) for folder, name in runs.items()]
        return [r for r in runs if not os.path.exists(os.path.join(r[1], "results.json"))]

    def time_models(self, seed, names):
        """Seconds per training iteration of the models of the config ``names`` (all "kd_"
        ones timed as the joint one, its teacher at every step, as "kd"; a teacher with random
        weights until the seed's is trained): ``time_per_iteration`` in a folder of this
        process's, <output>/.timing-*, removed after."""
        os.makedirs(self.output, exist_ok=True)
        timing, seconds = tempfile.mkdtemp(prefix=".timing-", dir=self.output), {}
        for name in ("teacher", "student"):
            if name in names:
                cfg = self.config(name, "", seed)
                folder = os.path.join(timing, name)
                logger.info(f"Timing the {name}: {TIMED_ITERATIONS + 2} training steps")
                seconds[name] = time_per_iteration(cfg, folder, TIMED_ITERATIONS)
                logger.info(f"The {name}: {seconds[name]:.2f} s per step")
        if any(name.startswith("kd_") for name in names):
            teacher = os.path.join(self.output, f"seed{seed}", "teacher")
            if not os.path.exists(os.path.join(teacher, RUN_WEIGHTS)):
                cfg = self.config("teacher", "", seed)
                teacher = random_teacher(cfg, os.path.join(timing, "random_teacher"))
            cfg = self.config("kd_joint", "", seed, teacher_options(teacher))
            folder = os.path.join(timing, "kd")
            logger.info(f"Timing a KD student: {TIMED_ITERATIONS + 2} training steps")
            seconds["kd"] = time_per_iteration(cfg, folder, TIMED_ITERATIONS)
            logger.info(f"A KD student: {seconds['kd']:.2f} s per step")
        shutil.rmtree(timing, ignore_errors=True)
        return seconds

    @property
    def schedule_file(self):
        return os.path.join(self.output, "schedule.json")

    def schedule_option(self):
        """{"epochs": ...} or {"budget_minutes": ...}: what sizes the schedules ({}: the
        configs)."""
        if self.epochs:
            return {"epochs": self.epochs}
        return {"budget_minutes": self.budget} if self.budget else {}

    def kept_schedule(self):
        """The plan of <output>/schedule.json ({} if none), which must be of the same
        ``schedule_option``: an output folder's runs all have one schedule."""
        if not os.path.exists(self.schedule_file):
            return {}
        with open(self.schedule_file, "rb") as f:
            text = f.read()
        try:
            kept = json.loads(text)
        except ValueError:  # (UnicodeDecodeError too)
            kept = None
        if not isinstance(kept, dict) or not {"factor", "seconds_per_iteration"} <= set(kept):
            raise ValueError(
                f"{self.schedule_file} is not a plan of this project (cut short, or another "
                "file): delete it to plan the schedules again"
            )
        kept_option = {k: v for k, v in kept.items() if k in ("epochs", "budget_minutes")}
        if kept_option != self.schedule_option():
            before, now = (
                schedule_option_text(option) or "the configs' schedules"
                for option in (kept_option, self.schedule_option())
            )
            raise ValueError(
                f"{self.output} was planned with {before} (its schedule.json), not {now}: "
                f"give the same to continue it, or another --output"
            )
        return kept

    def plan_schedules(self, seeds, variants):
        """Sizes the schedules of the runs left by one factor (``epochs``: the plain student's
        passes over the training set; ``budget``: the minutes their training may take here;
        else the configs') and returns the plan as text: each run's iterations, epochs and,
        when timed (``time_models``: with a budget, or when timing costs at most 5% of the
        iterations planned), minutes. The factor (and timings) of ``epochs`` or a budget are
        kept in <output>/schedule.json: a resumed pipeline keeps its schedules, and a pipeline
        started beside it on the same output (other seeds) waits for its plan and keeps it."""
        os.makedirs(self.output, exist_ok=True)
        with FileLock(os.path.join(self.output, ".schedule.lock")):
            return self._plan_schedules(seeds, variants)

    def _plan_schedules(self, seeds, variants):
        self.schedule_factor = 1.0
        images = len(DatasetCatalog.get(self.train))
        kept = self.kept_schedule()
        runs = self.runs_left(seeds, variants)
        teacher = teacher_options(os.path.join(self.output, f"seed{seeds[0]}", "teacher"))
        configs = [
            self.config(name, "", seeds[0], teacher if name.startswith("kd_") else ())
            for name, _ in runs
        ]
        kinds = [name if name in ("teacher", "student") else "kd" for name, _ in runs]
        timing_cost = len(set(kinds)) * (TIMED_ITERATIONS + 2)  # iterations
        iterations = sum(cfg.SOLVER.MAX_ITER for cfg in configs)
        if kept:
            seconds = kept["seconds_per_iteration"]
        elif runs and (self.budget or timing_cost <= TIMING_SHARE * iterations):
            seconds = self.time_models(seeds[0], {name for name, _ in runs})
        else:
            seconds = {}
        if self.budget and (runs or kept):
            iterations = {
                os.path.relpath(folder, self.output): [kind, cfg.SOLVER.MAX_ITER]
                for (_, folder), cfg, kind in zip(runs, configs, kinds)
            }
            self.budget_plan = Budget(self.budget, seconds, iterations, self.started, kept)
        if kept:  # (with a budget, the last re-planned factor)
            self.schedule_factor = kept.get("factor_now", kept["factor"])
        elif self.epochs:
            student = self.config("student", "", seeds[0])
            self.schedule_factor = self.epochs / schedule_epochs(student, images)
        elif self.budget and runs:
            self.schedule_factor = self.budget_plan.first_factor()
        configs = [scale_schedule(cfg, self.schedule_factor) for cfg in configs]
        if (self.epochs or self.budget) and runs and not kept:
            plan = {**self.schedule_option(), "factor": self.schedule_factor}
            plan["seconds_per_iteration"] = seconds
            if self.budget_plan:
                plan.update(self.budget_plan.state())
            atomic_write_bytes(self.schedule_file, json.dumps(plan, indent=1).encode())
        if not runs:
            return ""
        self.warn_if_short(seeds[0], images)
        if seconds:
            self.planned_minutes = {
                folder: cfg.SOLVER.MAX_ITER * seconds[kind] / 60
                for (_, folder), cfg, kind in zip(runs, configs, kinds)
            }
        return plan_table(
            [os.path.relpath(folder, self.output) for _, folder in runs],
            configs,
            [seconds.get(kind) for kind in kinds],
            self.train,
            images,
            self.schedule_factor,
            self.teacher_cache,
        )

    def run(self, name, folder, seed, extra=()):
        """Train and evaluate the run ``folder`` of config ``name``: (results, config). With a
        budget, the runs left are re-planned first (``Budget.start``) and the time each run
        took is kept in schedule.json."""
        path = os.path.join(self.output, f"seed{seed}", folder)
        done = os.path.exists(os.path.join(path, "results.json"))
        budget, run = self.budget_plan, os.path.relpath(path, self.output)
        if budget and not done:
            started, finished = run in budget.factors, self.finished_runs()
            self.schedule_factor = budget.start(run, self.schedule_factor, finished)
            self.save_budget()
            if not started:
                self.warn_if_short(seed, len(DatasetCatalog.get(self.train)))
        cfg = self.config(name, folder, seed, extra)
        estimate = ""
        if budget and not done:
            waiting = [r for r in budget.runs if r != run and r not in finished]
            minutes = [
                budget.minutes_left(runs, self.schedule_factor, finished)
                for runs in ([run], waiting)
            ]
            estimate = f", about {minutes[0]:.0f} min, then {minutes[1]:.0f} min planned"
        elif not done and path in self.planned_minutes:
            planned = self.planned_minutes
            left = [f for f in planned if not os.path.exists(os.path.join(f, "results.json"))]
            left = sum(planned[f] for f in left if f != path)
            estimate = f", about {planned[path]:.0f} min, then {left:.0f} min planned"
        logger.info(f"seed {seed}: {folder} ({'done before' if done else 'training'}{estimate})")
        began = time.monotonic()
        results = train_and_evaluate(cfg)
        if budget and not done:
            budget.finish(run, time.monotonic() - began)
            self.save_budget()
        return results, cfg

    def finished_runs(self):
        """The runs of the budget's plan that have their results."""
        return [
            r
            for r in self.budget_plan.runs
            if os.path.exists(os.path.join(self.output, r, "results.json"))
        ]

    def save_budget(self):
        """The budget's state into schedule.json (under its lock: a pipeline beside this one,
        on other seeds, keeps its own runs' records)."""
        with FileLock(os.path.join(self.output, ".schedule.lock")):
            with open(self.schedule_file) as f:
                plan = json.load(f)
            state = self.budget_plan.state()
            for key in ("runs", "run_factors", "run_seconds"):
                state[key] = {**plan.get(key, {}), **state[key]}
            plan.update(state, factor_now=self.schedule_factor)
            atomic_write_bytes(self.schedule_file, json.dumps(plan, indent=1).encode())

    def warn_if_short(self, seed, images):
        """Say, with what to do, when the plan gives the plain student fewer than
        ``MIN_USEFUL_EPOCHS`` passes over the training set."""
        epochs = schedule_epochs(self.config("student", "", seed), images)
        if epochs < MIN_USEFUL_EPOCHS:
            logger.warning(
                f"The schedules (x{self.schedule_factor:.3g}) give the plain student {epochs:.2f} "
                f"passes over {self.train}: it will learn little; ask for more --budget "
                f"minutes, or --epochs {MIN_USEFUL_EPOCHS:g} or more"
            )

    def teacher(self, seed, folder="teacher", extra=()):
        """T-WDet, evaluated, with pictures of its top proposals and labels on 20 test images
        (<run>/pictures); (results, config)."""
        results, cfg = self.run("teacher", folder, seed, extra)
        pictures = os.path.join(cfg.OUTPUT_DIR, "pictures")
        if not os.path.isdir(pictures):
            model = Trainer.build_model(cfg)
            load_trained_weights(model, os.path.join(cfg.OUTPUT_DIR, RUN_WEIGHTS))
            loader = Trainer.build_test_loader(cfg, self.test)
            visualize_teacher(model, loader, self.test, pictures + ".tmp", 20)
            os.replace(pictures + ".tmp", pictures)
        return results, cfg

    def student(self, seed):
        """S-Cls without KD: (results, config)."""
        return self.run("student", "student", seed)

    def evaluate_on_val(self, cfg):
        """A trained run evaluated on the val split, once for that split: kept in its
        val_results.json with the split's name and the digest of its images and labels, so
        that another --val, or the same one edited, is evaluated anew."""
        results_file = os.path.join(cfg.OUTPUT_DIR, "val_results.json")
        split = {"dataset": self.val, "digest": dataset_digest(self.val)}
        if os.path.exists(results_file):
            with open(results_file) as f:
                kept = json.load(f)
            if kept.get("split") == split:
                return kept["results"]
        model = Trainer.build_model(cfg)
        load_trained_weights(model, os.path.join(cfg.OUTPUT_DIR, RUN_WEIGHTS))
        cfg = cfg.clone()
        cfg.DATASETS.TEST = (self.val,)
        if isinstance(model, WSDDN):  # (a student needs no proposals at test time)
            cfg.DATASETS.PROPOSAL_FILES_TEST = (self.proposal_file(self.val),)
        results = Trainer.test(cfg, model)
        kept = {"split": split, "results": results}
        atomic_write_bytes(results_file, json.dumps(kept, indent=1).encode())
        return results

    def kd_student(self, seed, teacher_cfg, schedule, folder="student_kd", extra=()):
        """S-Cls with KD from the teacher run ``teacher_cfg``, in the authors' two stages (into
        <folder>_stage1, then <folder>_stage2 from its weights) or one joint stage
        (<folder>_joint); returns the final student's results."""
        kd = [*teacher_options(teacher_cfg.OUTPUT_DIR), *extra]
        if schedule == "joint":
            folder = f"{folder}_joint"
            return self.run("kd_joint", folder, seed, self.targets(seed, folder, kd))[0]
        stage1 = f"{folder}_stage1"
        _, stage1_cfg = self.run("kd_stage1", stage1, seed, self.targets(seed, stage1, kd))
        kd += ["MODEL.WEIGHTS", stage1_cfg.OUTPUT_DIR]
        folder = f"{folder}_stage2"
        return self.run("kd_stage2", folder, seed, self.targets(seed, folder, kd))[0]

    def targets(self, seed, folder, kd):
        """The overrides ``kd`` of the KD run ``folder``, with where its teacher's targets come
        from: the teacher cache (``cached_teacher``) with ``teacher_cache``, else the teacher
        at every step; a run started one way continues that way (its config.yaml)."""
        recorded = os.path.join(self.output, f"seed{seed}", folder, RUN_CONFIG)
        if os.path.exists(recorded):
            cache = read_flat_config(recorded).get("MODEL.DISTILL.TEACHER_CACHE", "")
        else:
            cache = self.cached_teacher(seed, kd) if self.teacher_cache else ""
        if not cache:
            return kd
        return [*kd, "MODEL.DISTILL.TEACHER_CACHE", cache, "MODEL.LOAD_PROPOSALS", False]

    def cached_teacher(self, seed, kd, name="teacher_cache"):
        """The store of the teacher's targets for the KD configs with the overrides ``kd`` (its
        teacher; tools/cache_teacher.py's), in <output>/seed<seed>/``name``: written first
        unless there (resumable). Returns its path."""
        cache = os.path.join(self.output, f"seed{seed}", name)
        if not os.path.isdir(cache):
            logger.info(f"seed {seed}: caching the teacher's targets into {cache}")
            write_teacher_cache(self.config("kd_joint", name, seed, kd), cache)
        return cache

    def kd_folder(self, seed, schedule, folder="student_kd"):
        """The run folder of the KD student of ``schedule`` (its last stage)."""
        stage = "joint" if schedule == "joint" else "stage2"
        return os.path.join(self.output, f"seed{seed}", f"{folder}_{stage}")

    def student_folders(self, seed, variants):
        """{PLAIN or kd_row(v): the run folder of that student of ``seed``}."""
        folders = {PLAIN: os.path.join(self.output, f"seed{seed}", "student")}
        return {**folders, **{kd_row(v): self.kd_folder(seed, v) for v in variants}}

    def chosen_on_val(self, seed, variants):
        """The trained student of ``seed`` to deploy: the one with the best mAP on the val
        split, the student without KD first among equals (a KD student that copied a weak
        teacher loses to it there). Returns (its name, {student: val mAP})."""
        val_map = {}
        for name, folder in self.student_folders(seed, variants).items():
            cfg = setup_cfg(os.path.join(folder, RUN_CONFIG))
            cfg.OUTPUT_DIR = folder
            val_map[name] = self.evaluate_on_val(cfg)["multilabel"]["mAP"]
        return max(val_map, key=val_map.get), val_map

    def test_intervals(self, summary, variants, resamples=1000):
        """Each model's test mAP over the classes with at least ``min_test_positives`` positive
        test images, with a 95% interval over bootstrap resamples of the test images, and each
        KD gain's paired interval: {"classes", "excluded", "per_seed": {seed: {model or
        gain_row(v): [mAP, low, high]}}}, read from each run's saved test scores."""
        class_names = thing_classes_of(self.test)
        per_seed, classes, excluded = {}, None, []
        for seed in summary["per_seed"]:
            folders = self.student_folders(seed, variants)
            folders[TEACHER] = os.path.join(self.output, f"seed{seed}", "teacher")
            if summary["chosen_on_val"]:
                folders[CHOSEN] = folders[summary["chosen_on_val"][seed][0]]
            scores, labels = {}, None
            for name, folder in folders.items():
                path = os.path.join(folder, "inference", self.test, "multilabel_scores.npz")
                with np.load(path) as saved:  # (ignored pairs rank last, as in the evaluation)
                    ignored = saved["ignored_labels"] > 0
                    scores[name] = np.where(ignored, -np.inf, saved["ranking_scores"])
                    labels = (saved["labels"] > 0) & ~ignored
            positives = labels.sum(axis=0)
            classes = np.flatnonzero(positives >= self.min_test_positives)
            excluded = [class_names[k] for k in np.flatnonzero(positives > 0) if k not in classes]
            names = list(scores)
            point, maps = bootstrap_map([scores[n] for n in names], labels, classes, resamples)
            row = {n: [point[i], *np.percentile(maps[i], [2.5, 97.5])] for i, n in enumerate(names)}
            for v in [*variants, CHOSEN] if CHOSEN in names else variants:
                kd = names.index(CHOSEN if v == CHOSEN else kd_row(v))
                gain = maps[kd] - maps[names.index(PLAIN)]
                row[gain_row(v)] = [
                    row[names[kd]][0] - row[PLAIN][0],
                    *np.percentile(gain, [2.5, 97.5]),
                ]
            per_seed[seed] = {k: [float(x) for x in v] for k, v in row.items()}
        return {
            "min_positives": self.min_test_positives,
            "classes": len(classes),
            "excluded": excluded,
            "per_seed": per_seed,
        }

    def near_chance(self, summary, share=0.1):
        """The models whose test mAP is less than ``share`` of the way from chance (random
        scores, ``chance_map``) to 100: they learnt little (too short a schedule, or labels
        that say little), whatever the table says of them; each warned (a tenth: on ADE20K's
        150 classes the best models go a third of the way, from chance 7.7 to 37.7).
        {"chance": mAP, "models": [[seed, model, mAP], ...]}."""
        seed = next(iter(summary["per_seed"]))
        scores = os.path.join(self.output, f"seed{seed}", "student", "inference", self.test)
        with np.load(os.path.join(scores, "multilabel_scores.npz")) as saved:
            chance = chance_map(saved["labels"])
        models = [
            [seed, name, values["mAP"]]
            for seed, rows in summary["per_seed"].items()
            for name, values in rows.items()
            if not name.startswith("KD gain")
            and name != CHOSEN
            and values["mAP"] < chance + share * (100 - chance)
        ]
        longer = (  # (a planned output keeps its schedules: a new plan needs a new output)
            "more --budget minutes or more --epochs, in another --output"
            if self.schedule_option()
            else "SOLVER.MAX_ITER, or --epochs"
        )
        for seed, name, value in models:
            logger.warning(
                f"seed {seed}: {name} scores {value:.1f} test mAP, near chance ({chance:.1f}, "
                f"random scores): it learnt little; train it longer ({longer}) or check the "
                "labels"
            )
        return {"chance": chance, "models": models}

    def compare_on_val(self, seed, teacher_cfg, student_cfg):
        """Warn, before distilling, when the teacher is not above the plain student on the val
        split: its image scores then have little to teach (the paper's teacher is 7.7 mAP
        above its student on COCO). Returns (teacher's val mAP, student's)."""
        teacher, student = (
            self.evaluate_on_val(cfg)["multilabel"]["mAP"] for cfg in (teacher_cfg, student_cfg)
        )
        if teacher <= student:
            logger.warning(
                f"seed {seed}: the teacher scores {teacher:.1f} val mAP, the plain student "
                f"{student:.1f}: a teacher below its student has little to teach; try a "
                "stronger teacher (a larger backbone, MODEL.TIMM.NAME; larger images, "
                "INPUT.MIN_SIZE_TRAIN / TEST) or more labelled photos"
            )
        return teacher, student

    def run_seed(self, seed, variants):
        """Every model of one seed: {model: test results} (``PLAIN``, ``TEACHER``,
        ``kd_row(v)``)."""
        teacher, teacher_cfg = self.teacher(seed)
        student, student_cfg = self.student(seed)
        runs = {PLAIN: student, TEACHER: teacher}
        if self.val:
            self.compare_on_val(seed, teacher_cfg, student_cfg)
        for variant in variants:
            runs[kd_row(variant)] = self.kd_student(seed, teacher_cfg, variant)
        return runs

    def settings_line(self):
        """What made the results: the configs, the datasets, the proposals, the overrides."""
        opts = " ".join(f"{k} {v}" for k, v in zip(self.opts[::2], self.opts[1::2]))
        schedule = schedule_option_text(self.schedule_option())
        return (
            f"Made with the configs of {self.config_dir}, trained on {self.train}"
            + (f", chosen on {self.val}" if self.val else "")
            + (
                f", the KD students also on {self.unlabeled} without labels"
                if self.unlabeled
                else ""
            )
            + f", {self.max_proposals} {self.method} proposals per image"
            + (f"; overrides: `{opts}`" if opts else "")
            + (f"; schedules x{self.schedule_factor:.3g} ({schedule})" if schedule else "")
            + "."
        )

    def run_all(self, seeds, variants, chart_frequency=None):
        """All seeds: writes <output>/results.md (Table 3 per seed, mean ± std, paired gains),
        results.json (``summarize``) and kd_gain_per_class.png (the last variant's per-class
        AP gain over S-Cls w/o KD, classes in the order of ``chart_frequency``, images per
        class of the training set); returns (summary, the tables as text). The schedules and
        the time they take are planned first (``plan_schedules``, logged)."""
        plan = self.plan_schedules(seeds, variants)
        if plan:
            logger.info(f"\n{plan}")
        runs = {seed: self.run_seed(seed, variants) for seed in seeds}
        chosen = {seed: self.chosen_on_val(seed, variants) for seed in seeds} if self.val else {}
        summary = summarize(runs, variants, chosen)
        summary["intervals"] = self.test_intervals(summary, variants)
        summary["near_chance"] = self.near_chance(summary)
        table = results_tables(summary, self.test, self.val, self.settings_line())
        atomic_write_bytes(os.path.join(self.output, "results.md"), table.encode())
        atomic_write_bytes(
            os.path.join(self.output, "results.json"), json.dumps(summary, indent=1).encode()
        )
        class_names = thing_classes_of(self.test)
        shown = kd_row(variants[-1])
        ap = {  # classes without a positive test image have no AP (NaN, no bar)
            name: np.mean(
                [
                    [r[name]["multilabel"].get(f"AP-{c}", np.nan) for c in class_names]
                    for r in runs.values()
                ],
                axis=0,
            )
            for name in (PLAIN, shown)
        }
        if chart_frequency is None:
            chart_frequency = dataset_summary(DatasetCatalog.get(self.train), class_names)[
                "class_images"
            ]
        chart = os.path.join(self.output, "kd_gain_per_class.png")
        plot_ap_gain(class_names, chart_frequency, ap[PLAIN], ap[shown], chart)
        return summary, table
