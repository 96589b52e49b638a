#!/usr/bin/env python
"""Draw a trained teacher's top-10 proposals and top-3 labels for images of a dataset.

    python tools/visualize.py --config-file output/demo/seed0/teacher --output output/vis

--config-file is a run folder (its config.yaml and model_final.pth), a run's config.yaml or a
config file with MODEL.WEIGHTS.

Proposals are ranked by ``max_k S_rk`` (their largest WSDDN region score); labels by the
image score, green (+) when in the ground truth, red (x) when not.
"""

import wsd_distill  # noqa: F401  isort: skip  (first: it quiets detectron2's import warnings)
import argparse

from wsd_distill.engine import (
    Trainer,
    load_trained_weights,
    positive_int,
    run_tool,
    setup_run_cfg,
)
from wsd_distill.visualization import visualize_teacher


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, metavar="RUN", help="a run folder or a config file"
    )
    parser.add_argument(
        "--dataset", default=None, help="a dataset of DATASETS.TEST (default: the first)"
    )
    parser.add_argument("--output", required=True, help="folder for the pictures")
    parser.add_argument("--num-images", type=positive_int, default=20)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model.pth"
    )
    return parser


def main(args):
    cfg = setup_run_cfg(args.config_file, args.opts)
    if not (args.dataset or cfg.DATASETS.TEST):
        raise SystemExit(f"{args.config_file} has no DATASETS.TEST: name one with --dataset")
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    model = Trainer.build_model(cfg)
    load_trained_weights(model, cfg.MODEL.WEIGHTS)
    written = visualize_teacher(
        model, Trainer.build_test_loader(cfg, dataset), dataset, args.output, args.num_images
    )
    print(f"Wrote {len(written)} pictures to {args.output}")


if __name__ == "__main__":
    run_tool(main, get_parser().parse_args(), resume="")
