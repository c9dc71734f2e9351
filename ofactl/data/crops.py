"""Random crops for pretraining, deterministic per (seed, epoch, utterance).

A crop start depends only on the seed, the epoch and the dataset index, never
on worker or global RNG state, so a resumed run reads exactly the crops the
uninterrupted run would have.  Starts are multiples of the CNN hop (320
samples = one 20 ms frame), so guidance segments crop by a whole number of
frames: ``offset_frames = start_sample / 320``.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ofactl.data.audio import AudioError, load_audio
from ofactl.data.batching import AudioItem, BucketBatchSampler

HOP_SAMPLES = 320


def crop_start(seed: int, epoch: int, index: int, length: int, crop: int, hop: int = HOP_SAMPLES) -> int:
    """A start in ``[0, length - crop]``, a multiple of ``hop``, from a hash of its inputs."""
    if length <= crop:
        return 0
    slots = (length - crop) // hop + 1
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") % slots) * hop


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Wraps a :class:`BucketBatchSampler`; yields ``[(index, epoch), ...]`` so crops can depend on the epoch."""

    def __init__(self, sampler: BucketBatchSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [(i, epoch) for i in batch]

    def __len__(self) -> int:
        return len(self.sampler)


class Cropped(NamedTuple):
    index: int
    id: str
    wave: Tensor | None
    start: int
    error: AudioError | None


class CropDataset(Dataset):
    """Reads an utterance and cuts a ``crop_samples`` window (whole utterance if shorter)."""

    def __init__(self, items: Sequence[AudioItem], crop_samples: int, seed: int):
        self.items = list(items)
        self.crop_samples = int(crop_samples)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> Cropped:
        index, epoch = key
        item = self.items[index]
        try:
            wave = load_audio(item.path, start_s=item.offset_s, duration_s=item.duration_s)
        except AudioError as err:
            return Cropped(index, item.id, None, 0, err)
        start = crop_start(self.seed, epoch, index, wave.shape[0], self.crop_samples)
        return Cropped(index, item.id, wave[start : start + self.crop_samples], start, None)


class CropBatch(NamedTuple):
    """``audio (batch, samples)``, ``lengths (batch,)``, ids, indices, crop starts (samples), errors."""

    audio: Tensor
    lengths: Tensor
    ids: list[str]
    indices: list[int]
    starts: list[int]
    errors: list[tuple[int, str, AudioError]]


def collate_crops(items: Sequence[Cropped]) -> CropBatch:
    good = [it for it in items if it.wave is not None]
    lengths = torch.tensor([int(it.wave.shape[0]) for it in good], dtype=torch.long)
    audio = torch.zeros(len(good), int(lengths.max()) if good else 0)
    for row, it in enumerate(good):
        audio[row, : it.wave.shape[0]] = it.wave
    errors = [(it.index, it.id, it.error) for it in items if it.wave is None]
    return CropBatch(audio, lengths, [it.id for it in good], [it.index for it in good], [it.start for it in good], errors)
