#!/usr/bin/env python
"""Run the frozen teacher once over the training set, for every augmentation the student's
loader can draw (each INPUT.MIN_SIZE_TRAIN, unflipped and flipped), and store what KD needs:
p'_T (Eq. 10) and the RoI boxes and features (float16) that L_f uses. Then train the student
with MODEL.DISTILL.TEACHER_CACHE pointing at it: no teacher in the loop.

    python tools/cache_teacher.py --config-file configs/Synthetic/S-Cls_KD.yaml \\
        --output output/synthetic/teacher_cache
    python tools/train_net.py --config-file configs/Synthetic/S-Cls_KD.yaml \\
        MODEL.DISTILL.TEACHER_CACHE output/synthetic/teacher_cache MODEL.LOAD_PROPOSALS False

The config is the student's KD config (it names the teacher, its proposals, the temperatures,
ROI_SELECT/ROI_TOPK and the training sizes). A stopped run resumes when started again with
the same arguments; the cache appears at --output only when complete.
"""
import argparse
import io
import json
import logging
import os
import shutil

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from wsd_distill import add_wsd_distill_config
from wsd_distill.config import get_teacher_cfg
from wsd_distill.data import MultiLabelDatasetMapper, RaggedStoreWriter, get_multilabel_dataset_dicts
from wsd_distill.data.partial_run import open_partial_run
from wsd_distill.data.proposals import atomic_write_bytes
from wsd_distill.data.teacher_cache import cache_key, cache_variants, teacher_cache_settings, variant_augmentations
from wsd_distill.engine import build_teacher
from wsd_distill.modeling.box_head import wsddn_box_head_dim
from wsd_distill.modeling.distill_losses import wsddn_soft_scores
from wsd_distill.modeling.wsddn import top_regions

logger = logging.getLogger("wsd_distill")


@torch.no_grad()
def teacher_records(teacher, batch, flipped, cfg):
    """The cache records of one batch of mapped inputs: (key, soft_scores [K], boxes [N, 4], features [N, D])."""
    d = cfg.MODEL.DISTILL
    out = teacher.teacher_outputs(batch)
    n = out["num_regions"]
    soft = wsddn_soft_scores(out["cls_logits"], out["det_logits"], n, d.TEACHER_CLS_TEMPERATURE, d.TEACHER_DET_TEMPERATURE)
    keep = top_regions(out["cls_logits"], out["det_logits"], n, d.ROI_TOPK if d.ROI_SELECT == "top" else 0)
    for x, p, k, s, f in zip(batch, out["proposals"], keep, soft, out["roi_features"].split(n)):
        yield cache_key(x["image_id"], x["image"].shape[1:], flipped), s, p.proposal_boxes.tensor[k], f[k]


def write_chunk(path, records):
    keys, soft, boxes, features = zip(*records)
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array([json.dumps(k) for k in keys]), counts=np.array([len(b) for b in boxes]),
             soft_scores=torch.stack(soft).cpu().numpy(), proposal_boxes=torch.cat(boxes).cpu().numpy(),
             roi_features=torch.cat(features).half().cpu().numpy())  # fmt: skip
    atomic_write_bytes(path, buffer.getvalue())


def main(args):
    setup_logger(name="wsd_distill")
    cfg = add_wsd_distill_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if os.path.exists(args.output):
        logger.info(f"{args.output} already exists; delete it to cache again")
        return
    dicts = get_multilabel_dataset_dicts(cfg.DATASETS.TRAIN, filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
                                         proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN)  # fmt: skip
    settings = teacher_cache_settings(cfg, sorted(str(d["image_id"]) for d in dicts))
    chunks = open_partial_run(args.output, settings, len(dicts), args.chunk_size)
    todo = [c for c in chunks if not os.path.exists(c[0])]
    teacher = build_teacher(cfg)
    variants = cache_variants(cfg)
    mappers = {v: MultiLabelDatasetMapper(cfg, True, augmentations=variant_augmentations(cfg, *v)) for v in variants}
    done = len(dicts) - sum(e - s for _, s, e in todo)
    with tqdm(total=len(dicts), initial=done, desc="teacher cache", unit="img") as bar:
        for path, start, end in todo:
            records = []
            for (size, flipped), mapper in mappers.items():
                for b in range(start, end, args.batch_size):
                    batch = [mapper(dicts[i]) for i in range(b, min(b + args.batch_size, end))]
                    records += teacher_records(teacher, batch, flipped, cfg)
            write_chunk(path, records)
            bar.update(end - start)

    fields = {"soft_scores": ("float32", (cfg.MODEL.STUDENT.NUM_CLASSES,), True), "proposal_boxes": ("float32", (4,)),
              "roi_features": ("float16", (wsddn_box_head_dim(get_teacher_cfg(cfg)),))}  # fmt: skip
    with RaggedStoreWriter(args.output, fields, meta=settings) as writer:
        for path, _, _ in chunks:
            with np.load(path) as c:
                splits = np.cumsum(c["counts"])[:-1]
                for key, s, b, f in zip(c["keys"], c["soft_scores"], np.split(c["proposal_boxes"], splits), np.split(c["roi_features"], splits)):
                    writer.append(tuple(json.loads(str(key))), soft_scores=s, proposal_boxes=b, roi_features=f)
    shutil.rmtree(f"{args.output}.partial")
    logger.info(f"Wrote {args.output}: {len(dicts)} images x {len(variants)} augmentations")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the student's KD config")
    parser.add_argument("--output", required=True, help="teacher cache (a store folder) to write")
    parser.add_argument("--batch-size", type=int, default=16, help="images per teacher forward pass")
    parser.add_argument("--chunk-size", type=int, default=256, help="images per resumable chunk")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    main(parser.parse_args())
