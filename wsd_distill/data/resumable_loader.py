"""A training data loader that resumes where a killed run stopped.

detectron2's training loader restarts its sample stream and its augmentation randomness on
``--resume``, so a resumed run sees other batches than an uninterrupted one. Here the stream of
(position, index) pairs is a function of the seed alone, each sample's augmentation is seeded by
its position in the stream, and a loader set to iteration ``k`` yields batch ``k`` first.
"""

import itertools

import numpy as np
import torch.utils.data as torchdata
from detectron2.data import build_detection_train_loader
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import TrainingSampler
from detectron2.utils.comm import get_world_size


class ResumableTrainingSampler(TrainingSampler):
    """detectron2's ``TrainingSampler`` (same shuffled stream, same split across ranks) yielding
    ``(position in this rank's stream, dataset index)`` from position ``start`` on."""

    def __init__(self, size, shuffle=True, seed=None):
        super().__init__(size, shuffle, seed)
        self.start = 0

    def __iter__(self):
        stream = itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)
        yield from itertools.islice(enumerate(stream), self.start, None)


class SeededMapDataset(torchdata.Dataset):
    """``dataset[index]`` through ``mapper`` with NumPy's global RNG (which detectron2's
    augmentations draw from) seeded by ``(seed, position)``; the caller's RNG state is restored."""

    def __init__(self, dataset, mapper, seed):
        self.dataset, self.mapper, self.seed = dataset, mapper, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, position_and_index):
        position, index = position_and_index
        state = np.random.get_state()
        np.random.seed(np.random.SeedSequence([self.seed, position]).generate_state(1)[0])
        try:
            return self.mapper(self.dataset[index])
        finally:
            np.random.set_state(state)


class ResumableTrainLoader:
    """detectron2's training loader, iterated from batch ``start_iter`` (0 unless set before
    iterating, e.g. by ``Trainer.resume_or_load``) of the run started with the same seed.

    The loader's workers take the stream in interleaved chunks of one batch each, so the stream
    is entered at a multiple of ``num_workers`` batches and the few batches before
    ``start_iter`` are loaded and dropped. With aspect-ratio grouping and images of both
    orientations, the batches after a resume can differ (the groups restart empty).
    """

    def __init__(self, data_loader, sampler, batch_size, num_workers):
        self.data_loader, self.sampler = data_loader, sampler
        self.batch_size, self.workers = batch_size, max(num_workers, 1)
        self.start_iter = 0

    def __iter__(self):
        entry = self.start_iter // self.workers * self.workers
        self.sampler.start = entry * self.batch_size  # read when the workers start, in iter()
        return itertools.islice(iter(self.data_loader), self.start_iter - entry, None)


def build_resumable_train_loader(
    dicts, mapper, *, seed, total_batch_size, num_workers, aspect_ratio_grouping
):
    """A :class:`ResumableTrainLoader` over ``dicts`` through ``mapper``, seeded by ``seed``."""
    dataset = SeededMapDataset(DatasetFromList(dicts, copy=False), mapper, seed)
    sampler = ResumableTrainingSampler(len(dicts), seed=seed)
    loader = build_detection_train_loader(
        dataset,
        mapper=None,
        sampler=sampler,
        total_batch_size=total_batch_size,
        num_workers=num_workers,
        aspect_ratio_grouping=aspect_ratio_grouping,
        seed=seed,
    )
    return ResumableTrainLoader(loader, sampler, total_batch_size // get_world_size(), num_workers)
