"""Writing the teacher cache (``tools/cache_teacher.py``; the format: ``data/teacher_cache.py``)."""

import json
import logging
import os
import shutil

import numpy as np
import torch
from tqdm import tqdm

from ..config import distill_roi_topk, get_teacher_cfg
from ..data import MultiLabelDatasetMapper, RaggedStoreWriter, get_multilabel_dataset_dicts
from ..data.partial_run import open_partial_run, read_chunk, write_chunk
from ..data.teacher_cache import (
    cache_key,
    cache_variants,
    teacher_cache_settings,
    variant_augmentations,
)
from ..modeling.box_head import wsddn_box_head_dim
from ..modeling.distill_losses import wsddn_soft_scores
from ..modeling.wsddn import top_regions
from .teacher_hook import build_teacher

logger = logging.getLogger(__name__)


@torch.no_grad()
def teacher_records(teacher, batch, flipped, cfg):
    """The cache records of one batch of mapped inputs: (key, soft_scores [K], boxes [N, 4], features [N, D])."""
    d = cfg.MODEL.DISTILL
    out = teacher.teacher_outputs(batch)
    n = out["num_regions"]
    soft = wsddn_soft_scores(
        out["cls_logits"],
        out["det_logits"],
        n,
        d.TEACHER_CLS_TEMPERATURE,
        d.TEACHER_DET_TEMPERATURE,
    )
    keep = top_regions(out["cls_logits"], out["det_logits"], n, distill_roi_topk(cfg))
    for x, p, k, s, f in zip(batch, out["proposals"], keep, soft, out["roi_features"].split(n)):
        yield cache_key(x["image_id"], x["image"].shape[1:], flipped), s, p.proposal_boxes.tensor[
            k
        ], f[k]


def write_records(path, records):
    keys, soft, boxes, features = zip(*records)
    per_item = {
        "keys": np.array([json.dumps(k) for k in keys]),
        "soft_scores": torch.stack(soft).cpu().numpy(),
    }
    rows = {
        "proposal_boxes": [b.cpu().numpy() for b in boxes],
        "roi_features": [f.half().cpu().numpy() for f in features],
    }
    write_chunk(path, per_item, rows)


def write_teacher_cache(cfg, output, batch_size=16, chunk_size=256):
    """Cache the teacher of the KD config ``cfg`` for its training set at ``output``
    (resumable: chunks in ``<output>.partial/``; the store appears when complete)."""
    dicts = get_multilabel_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN,
    )
    settings = teacher_cache_settings(cfg, dicts)
    chunks = open_partial_run(output, settings, len(dicts), chunk_size)
    todo = [c for c in chunks if not os.path.exists(c[0])]
    teacher = build_teacher(cfg)
    variants = cache_variants(cfg)
    mappers = {
        v: MultiLabelDatasetMapper(cfg, True, augmentations=variant_augmentations(cfg, *v))
        for v in variants
    }
    done = len(dicts) - sum(e - s for _, s, e in todo)
    with tqdm(total=len(dicts), initial=done, desc="teacher cache", unit="img") as bar:
        for path, start, end in todo:
            records = []
            for (size, flipped), mapper in mappers.items():
                for b in range(start, end, batch_size):
                    batch = [mapper(dicts[i]) for i in range(b, min(b + batch_size, end))]
                    records += teacher_records(teacher, batch, flipped, cfg)
            write_records(path, records)
            bar.update(end - start)

    fields = {
        "soft_scores": ("float32", (cfg.MODEL.STUDENT.NUM_CLASSES,), True),
        "proposal_boxes": ("float32", (4,)),
        "roi_features": ("float16", (wsddn_box_head_dim(get_teacher_cfg(cfg)),)),
    }
    with RaggedStoreWriter(output, fields, meta=settings) as writer:
        for path, _, _ in chunks:
            for key, s, b, f in read_chunk(
                path, ("keys", "soft_scores"), ("proposal_boxes", "roi_features")
            ):
                writer.append(
                    tuple(json.loads(str(key))), soft_scores=s, proposal_boxes=b, roi_features=f
                )
    shutil.rmtree(f"{output}.partial")
    logger.info(f"Wrote {output}: {len(dicts)} images x {len(variants)} augmentations")
