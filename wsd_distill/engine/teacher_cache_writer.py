"""Writing the teacher cache (``tools/cache_teacher.py``; the format: ``data/teacher_cache.py``)."""

import json
import logging
import os
import shutil

import numpy as np
import torch
from tqdm import tqdm

from ..data.build import get_multilabel_dataset_dicts
from ..data.mapper import MultiLabelDatasetMapper
from ..data.teacher_cache import (
    cache_key,
    cache_variants,
    teacher_cache_settings,
    variant_augmentations,
)
from ..data.teacher_targets import PER_ROI_FIELDS, target_store_fields, teacher_target_settings
from ..modeling.teacher import build_teacher, teacher_targets
from ..utils.partial_run import open_partial_run, read_chunk, write_chunk
from ..utils.ragged_store import RaggedStoreWriter

logger = logging.getLogger(__name__)


@torch.no_grad()
def teacher_records(teacher, batch, flipped, target_settings):
    """The cache records of one batch of mapped inputs: (key, ``teacher_targets`` dict)."""
    targets = teacher_targets(teacher.teacher_outputs(batch), **target_settings)
    for x, t in zip(batch, targets):
        yield cache_key(x["image_id"], x["image"].shape[1:], flipped), t


def write_records(path, records):
    keys, targets = zip(*records)
    per_item = {
        "keys": np.array([json.dumps(k) for k in keys]),
        "soft_scores": torch.stack([t["soft_scores"] for t in targets]).cpu().numpy(),
    }
    rows = {name: [t[name].cpu().numpy() for t in targets] for name in PER_ROI_FIELDS}
    rows["roi_features"] = [f.astype(np.float16) for f in rows["roi_features"]]
    write_chunk(path, per_item, rows)


def write_teacher_cache(cfg, output, batch_size=16, chunk_size=256):
    """Cache the teacher of the KD config ``cfg`` for its training set at ``output``
    (resumable: chunks in ``<output>.partial/``; the store appears when complete)."""
    dicts = get_multilabel_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_unlabeled=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN,
        check_proposal_images=cfg.DATASETS.PROPOSAL_FILES_CHECK,
    )
    settings = teacher_cache_settings(cfg, dicts)
    chunks = open_partial_run(output, settings, len(dicts), chunk_size)
    todo = [c for c in chunks if not os.path.exists(c[0])]
    teacher = build_teacher(cfg)
    target_settings = teacher_target_settings(cfg)
    variants = cache_variants(cfg)
    mappers = {
        v: MultiLabelDatasetMapper(cfg, True, augmentations=variant_augmentations(cfg, *v))
        for v in variants
    }
    done = len(dicts) - sum(e - s for _, s, e in todo)
    if done:
        logger.info(f"Resuming {output}: {done} of {len(dicts)} images already done")
    with tqdm(total=len(dicts), initial=done, desc="teacher cache", unit="img") as bar:
        for path, start, end in todo:
            records = []
            for (size, flipped), mapper in mappers.items():
                for b in range(start, end, batch_size):
                    batch = [mapper(dicts[i]) for i in range(b, min(b + batch_size, end))]
                    records += teacher_records(teacher, batch, flipped, target_settings)
            write_records(path, records)
            bar.update(end - start)

    fields = target_store_fields(
        cfg.MODEL.STUDENT.NUM_CLASSES, cfg.MODEL.DISTILL.TEACHER_FEATURE_DIM
    )
    with RaggedStoreWriter(output, fields, meta=settings) as writer:
        for path, _, _ in chunks:
            for key, soft, *per_roi in read_chunk(path, ("keys", "soft_scores"), PER_ROI_FIELDS):
                writer.append(
                    tuple(json.loads(str(key))),
                    soft_scores=soft,
                    **dict(zip(PER_ROI_FIELDS, per_roi)),
                )
    shutil.rmtree(f"{output}.partial")
    logger.info(f"Wrote {output}: {len(dicts)} images x {len(variants)} augmentations")
