#!/usr/bin/env python
"""Draw a trained teacher's top-10 proposals and top-3 labels for images of a dataset.

    python tools/visualize.py --config-file configs/Synthetic/T-WDet.yaml --output output/vis \\
        MODEL.WEIGHTS output/synthetic/t_wdet/model_final.pth

Proposals are ranked by ``max_k S_rk`` (their largest WSDDN region score); labels by the
image score, green (+) when in the ground truth, red (x) when not.
"""
import argparse
import os

import cv2
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from tqdm import tqdm

from wsd_distill import add_wsd_distill_config
from wsd_distill.engine import Trainer
from wsd_distill.visualization import draw_teacher_view, proposal_objectness


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--dataset", default=None, help="a dataset of DATASETS.TEST (default: the first)")
    parser.add_argument("--output", required=True, help="folder for the pictures")
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model.pth")
    return parser


def main(args):
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    model = Trainer.build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    class_names = MetadataCatalog.get(dataset).thing_classes
    os.makedirs(args.output, exist_ok=True)
    done = 0
    with torch.no_grad(), tqdm(total=args.num_images, desc="visualize") as bar:
        for batch in Trainer.build_test_loader(cfg, dataset):
            out = model.teacher_outputs(batch)
            scores = out["region_scores"].split(out["num_regions"])
            for x, proposals, region_scores, image_scores in zip(batch, out["proposals"], scores, out["image_scores"]):
                image = utils.read_image(x["file_name"], format="RGB")
                boxes = proposals.proposal_boxes.tensor.clone()
                boxes[:, 0::2] *= image.shape[1] / x["image"].shape[2]  # network input -> original pixels
                boxes[:, 1::2] *= image.shape[0] / x["image"].shape[1]
                drawing = draw_teacher_view(
                    image, boxes.cpu().numpy(), proposal_objectness(region_scores).cpu().numpy(),
                    image_scores.cpu().numpy(), class_names, x["multi_labels"].numpy(),
                )  # fmt: skip
                cv2.imwrite(os.path.join(args.output, f"{x['image_id']}.jpg"), drawing[:, :, ::-1])
                done += 1
                bar.update(1)
                if done >= args.num_images:
                    return


if __name__ == "__main__":
    main(get_parser().parse_args())
