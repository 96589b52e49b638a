#!/usr/bin/env python
"""Train or evaluate a wsd-distill model (teacher or student) with detectron2's engine.

python tools/train_net.py --config-file configs/Synthetic/T-WDet.yaml
python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/<run>  (its folder)
python tools/train_net.py --eval-only --config-file output/<run>  (its config and weights;
    the results in output/<run>/eval unless OUTPUT_DIR is given)
python tools/train_net.py --config-file ... --num-gpus 8 SOLVER.IMS_PER_BATCH 64
"""

import wsd_distill  # noqa: F401  isort: skip  (first: its OpenMP setting precedes torch)
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, default_setup, hooks, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from wsd_distill.checkpoint import load_trained_weights
from wsd_distill.data.datasets import prepare_synthetic_shapes
from wsd_distill.engine import (
    Trainer,
    claim_output_dir,
    run_files,
    run_seed,
    run_tool,
    setup_cfg,
    setup_run_cfg,
)
from wsd_distill.utils import refuse_links


def setup(args):
    if args.eval_only:  # --config-file may name a run folder (config.yaml, model_final.pth)
        cfg = setup_run_cfg(args.config_file, args.opts)
        args.config_file, weights = run_files(args.config_file)  # (default_setup logs its text)
        if weights and "OUTPUT_DIR" not in args.opts[::2]:
            # a trained run is evaluated into <its folder>/eval, where the folder lies, not
            # where its config.yaml says it was trained: the run's config.yaml and log stay
            # as they are, and a run folder someone sent writes nowhere else
            cfg.OUTPUT_DIR = os.path.join(os.path.dirname(os.path.abspath(weights)), "eval")
            refuse_links(os.path.dirname(cfg.OUTPUT_DIR))  # (an "eval" link too)
    else:
        cfg = setup_cfg(args.config_file, args.opts)
    cfg.freeze()
    refuse_links(cfg.OUTPUT_DIR)  # (default_setup writes config.yaml and log.txt there)
    default_setup(cfg, args)
    # wsd-distill's own messages (dataset counts, the per-class AP table, skipped evaluations)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wsd_distill", abbrev_name="wsd"
    )
    return cfg


def main(args):
    cfg = setup(args)
    if comm.is_main_process():
        prepare_synthetic_shapes(cfg)  # generates the embedded benchmark when the config uses it
    comm.synchronize()
    if args.eval_only:
        model = Trainer.build_model(cfg)
        if args.resume:  # the last checkpoint of OUTPUT_DIR
            DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                cfg.MODEL.WEIGHTS, resume=True
            )
        else:  # a trained model's weights, all of them (MODEL.WEIGHTS may name its run folder)
            load_trained_weights(model, cfg.MODEL.WEIGHTS)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # the teacher with test-time augmentation too
            results.update(Trainer.test_with_TTA(cfg, model))
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        trainer.register_hooks(
            [hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))]
        )
    return trainer.train()


def claim_and_launch(args):
    """Training: refuse an OUTPUT_DIR that holds a run not resumed, or that another process
    trains in (``claim_output_dir``; by the first machine), before anything is written there;
    a negative SEED becomes the run's recorded one (``run_seed``); then launch."""
    lock = None
    if not args.eval_only and args.machine_rank == 0:
        cfg = setup_cfg(args.config_file, args.opts)
        if cfg.SEED < 0 and args.num_machines == 1:  # drawn, recorded in config.yaml: resumable
            cfg.SEED = run_seed(cfg)
            args.opts = [*args.opts, "SEED", cfg.SEED]
        lock = claim_output_dir(cfg, args.resume)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    finally:
        if lock:
            os.remove(lock)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    run_tool(
        lambda: claim_and_launch(args),
        resume="add --resume to the same command to continue from its last checkpoint",
    )
