"""Writing the teacher cache (``tools/cache_teacher.py``; the format: ``data/teacher_cache.py``)."""

import functools
import json
import logging
import os
import shutil

import numpy as np
import torch
from tqdm import tqdm

from ..data.build import training_dataset_dicts
from ..data.image_files import read_image
from ..data.mapper import MultiLabelDatasetMapper
from ..data.teacher_cache import (
    cache_key,
    cache_variants,
    teacher_cache_settings,
    variant_augmentations,
)
from ..data.teacher_targets import (
    PER_ROI_FIELDS,
    target_store_fields,
    teacher_target_settings,
)
from ..modeling.teacher import build_teacher, get_teacher_cfg, teacher_targets
from ..utils.partial_run import open_partial_run, read_chunk, write_chunk
from ..utils.ragged_store import RaggedStoreWriter

logger = logging.getLogger(__name__)


@torch.no_grad()
def teacher_records(teacher, batch, flipped, target_settings):
    """The cache records of one batch of mapped inputs: (key, ``teacher_targets`` dict)."""
    targets = teacher_targets(teacher.teacher_outputs(batch), **target_settings)
    for x, t in zip(batch, targets):
        yield cache_key(x["image_id"], x["image"].shape[1:], flipped), t


def map_variants(dicts, mappers, indices):
    """The images ``indices`` of ``dicts``, each read once, through each variant's mapper:
    [variant][image]."""
    images = [read_image(dicts[i], mappers[0].image_format) for i in indices]
    return [[mapper(dicts[i], x) for i, x in zip(indices, images)] for mapper in mappers]


def variant_mappers(cfg):
    """{(size, flipped): the training mapper with that augmentation} of ``cache_variants``."""
    return {
        v: MultiLabelDatasetMapper(cfg, True, augmentations=variant_augmentations(cfg, *v))
        for v in cache_variants(cfg)
    }


def write_records(path, records):
    keys, targets = zip(*records)
    per_item = {
        "keys": np.array([json.dumps(k) for k in keys]),
        "soft_scores": torch.stack([t["soft_scores"] for t in targets]).cpu().numpy(),
    }
    rows = {name: [t[name].cpu().numpy() for t in targets] for name in PER_ROI_FIELDS}
    rows["roi_features"] = [f.astype(np.float16) for f in rows["roi_features"]]
    write_chunk(path, per_item, rows)


def store_fields(cfg):
    """The fields of the teacher cache of ``cfg`` (``target_store_fields``)."""
    d = cfg.MODEL.DISTILL
    return target_store_fields(cfg.MODEL.STUDENT.NUM_CLASSES, d.TEACHER_FEATURE_DIM)


def cache_size(cfg, num_images):
    """An upper bound of a teacher cache's size for ``num_images`` training images:
    {"entries": images x augmentations, "rois": RoIs per entry (the teacher's
    MAX_PROPOSALS, at most PRECOMPUTED_PROPOSAL_TOPK_TRAIN and a ROI_TOPK above 0),
    "bytes_per_entry", "bytes"}. Writing it needs about twice that at its end (the chunks and
    the store, until the chunks are removed)."""
    d, teacher = cfg.MODEL.DISTILL, get_teacher_cfg(cfg)
    rois = min(teacher.MODEL.WSDDN.MAX_PROPOSALS, cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN)
    rois = min(rois, d.ROI_TOPK) if d.ROI_TOPK else rois
    fields = store_fields(cfg)
    per_entry = sum(
        np.dtype(dtype).itemsize * int(np.prod(shape)) * (1 if per_image else rois)
        for dtype, shape, *per_image in fields.values()
    )
    entries = num_images * len(cache_variants(cfg))
    return {
        "entries": entries,
        "rois": rois,
        "bytes_per_entry": per_entry,
        "bytes": entries * per_entry,
    }


def check_disk_space(output, needed):
    """Refuse to start a job that needs ``needed`` bytes beside ``output`` when the disk has
    less free (naming both)."""
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise OSError(
            f"{output} needs about {needed / 2**30:.1f} GiB while it is written, and {folder} "
            f"has {free / 2**30:.1f} GiB free: free space, write it elsewhere, or cache fewer "
            f"RoIs (MODEL.DISTILL.ROI_TOPK) or train with the teacher online"
        )


def write_teacher_cache(cfg, output, batch_size=16, chunk_size=256):
    """Cache the teacher of the KD config ``cfg`` for its training set at ``output``
    (resumable: chunks in ``<output>.partial/``; the store appears when complete)."""
    dicts = training_dataset_dicts(cfg)
    settings = teacher_cache_settings(cfg, dicts)
    check_disk_space(output, 2 * cache_size(cfg, len(dicts))["bytes"])
    chunks = open_partial_run(output, settings, len(dicts), chunk_size)
    todo = [c for c in chunks if not os.path.exists(c[0])]
    teacher = build_teacher(cfg)
    target_settings = teacher_target_settings(cfg)
    mappers = variant_mappers(cfg)
    done = len(dicts) - sum(e - s for _, s, e in todo)
    if done:
        logger.info(f"Resuming {output}: {done} of {len(dicts)} images already done")
    with tqdm(total=len(dicts), initial=done, desc="teacher cache", unit="img") as bar:
        for path, start, end in todo:
            records = []
            # the images are read and augmented in DATALOADER.NUM_WORKERS processes, while
            # the teacher runs on the previous batch
            loader = torch.utils.data.DataLoader(
                range(start, end),
                batch_size=batch_size,
                num_workers=cfg.DATALOADER.NUM_WORKERS,
                collate_fn=functools.partial(map_variants, dicts, list(mappers.values())),
            )
            for batch in loader:  # [variant][image]
                for (_, flipped), inputs in zip(mappers, batch):
                    records += teacher_records(teacher, inputs, flipped, target_settings)
            write_records(path, records)
            bar.update(end - start)

    fields = store_fields(cfg)
    per_roi = [name for name, spec in fields.items() if len(spec) == 2]
    with RaggedStoreWriter(output, fields, meta=settings) as writer:
        for path, _, _ in chunks:
            for key, soft, *rows in read_chunk(path, ("keys", "soft_scores"), per_roi):
                writer.append(
                    tuple(json.loads(str(key))), soft_scores=soft, **dict(zip(per_roi, rows))
                )
    shutil.rmtree(f"{output}.partial")
    logger.info(f"Wrote {output}: {len(dicts)} images x {len(mappers)} augmentations")
