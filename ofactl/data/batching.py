"""Length-bucketed batches of audio, read and resampled in DataLoader workers.

* :class:`BucketBatchSampler` groups utterances of similar length so that a
  batch holds at most ``max_batch_s`` seconds of *padded* audio (batch size x
  longest utterance: that is what memory and compute pay for).  Deterministic
  for a seed and epoch, shardable across distributed ranks, and resumable from
  a batch position.
* :class:`AudioDataset` reads one utterance (with its offset and duration) via
  :mod:`ofactl.data.audio`; a bad file becomes an error record, not an
  exception, so a long job records it and goes on.
* :func:`collate` pads to ``(batch, samples)`` and keeps the lengths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ofactl.data.audio import SAMPLE_RATE, AudioError, load_audio


def bucket_batches(durations_s: Sequence[float], max_batch_s: float, max_batch_size: int | None = None) -> list[list[int]]:
    """Sort by duration and cut into batches of at most ``max_batch_s`` padded seconds.

    A single utterance longer than ``max_batch_s`` gets a batch of its own.
    Returns lists of indices into ``durations_s``, shortest batches first.
    """
    if max_batch_s <= 0:
        raise ValueError(f"max_batch_s must be positive, found {max_batch_s}")
    order = sorted(range(len(durations_s)), key=lambda i: (durations_s[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = durations_s[i]  # sorted ascending: the newcomer is the longest
        full_size = max_batch_size is not None and len(current) >= max_batch_size
        if current and ((len(current) + 1) * longest > max_batch_s or full_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances, shuffled per epoch, sharded per rank.

    Args:
        durations_s: one duration per dataset index.
        max_batch_s: padded seconds per batch.
        shuffle: shuffle the order of batches (their content stays length-sorted).
        seed: base seed; the order of epoch ``e`` depends on ``seed + e`` only.
        rank, world_size: distributed shard; every rank gets the same number of
            batches (the list is cut to a multiple of ``world_size``, dropping
            at most ``world_size - 1`` batches when ``drop_uneven``, else
            padding by repeating batches from the start).
        max_batch_size: optional cap on utterances per batch.
    """

    def __init__(
        self,
        durations_s: Sequence[float],
        max_batch_s: float,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_batch_size: int | None = None,
        drop_uneven: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), found {rank}")
        self.batches = bucket_batches(durations_s, max_batch_s, max_batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_uneven = drop_uneven
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip its first ``start`` batches (resume)."""
        self.epoch = epoch
        self.start = start

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for ``epoch`` (all of them, ignoring ``start``)."""
        epoch = self.epoch if epoch is None else epoch
        batches = list(self.batches)
        if self.shuffle:
            random.Random(self.seed + epoch).shuffle(batches)
        if self.world_size > 1 and batches:
            if self.drop_uneven:
                batches = batches[: len(batches) - len(batches) % self.world_size]
            else:
                extra = (-len(batches)) % self.world_size
                batches = batches + [batches[i % len(batches)] for i in range(extra)]
        return batches[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.start :]

    def __len__(self) -> int:
        return max(len(self.epoch_batches()) - self.start, 0)


@dataclass(frozen=True)
class AudioItem:
    """One utterance to read: path, offset and duration (None: whole file)."""

    id: str
    path: str
    offset_s: float = 0.0
    duration_s: float | None = None


@dataclass
class Loaded:
    """What :class:`AudioDataset` yields for one index."""

    index: int
    id: str
    wave: Tensor | None
    error: AudioError | None = None


class AudioDataset(Dataset):
    """Reads utterances as 16 kHz mono float32 tensors.  Bad files become error records."""

    def __init__(self, items: Sequence[AudioItem], sample_rate: int = SAMPLE_RATE, whole_file: bool = False):
        self.items = list(items)
        self.sample_rate = sample_rate
        self.whole_file = whole_file

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Loaded:
        item = self.items[index]
        duration = None if self.whole_file else item.duration_s
        offset = 0.0 if self.whole_file else item.offset_s
        try:
            wave = load_audio(item.path, start_s=offset, duration_s=duration, sample_rate=self.sample_rate)
        except AudioError as err:
            return Loaded(index, item.id, None, err)
        return Loaded(index, item.id, wave)


class Batch(NamedTuple):
    """A padded batch.

    Attributes:
        audio: ``(batch, samples)`` float32, zero-padded.
        lengths: ``(batch,)`` valid samples.
        ids: utterance ids, in batch order.
        indices: dataset indices, in batch order.
        errors: ``(index, id, AudioError)`` for the utterances that could not be read
            (they are not in ``audio``).
    """

    audio: Tensor
    lengths: Tensor
    ids: list[str]
    indices: list[int]
    errors: list[tuple[int, str, AudioError]]


def collate(items: Sequence[Loaded]) -> Batch:
    """Pad the readable waveforms of ``items`` into one batch; keep the failures aside."""
    good = [it for it in items if it.wave is not None]
    errors = [(it.index, it.id, it.error) for it in items if it.wave is None]
    lengths = torch.tensor([int(it.wave.shape[0]) for it in good], dtype=torch.long)
    longest = int(lengths.max()) if len(good) else 0
    audio = torch.zeros(len(good), longest, dtype=torch.float32)
    for row, it in enumerate(good):
        audio[row, : it.wave.shape[0]] = it.wave
    return Batch(audio, lengths, [it.id for it in good], [it.index for it in good], errors)


def make_loader(
    items: Sequence[AudioItem],
    durations_s: Sequence[float],
    max_batch_s: float = 160.0,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 2,
    rank: int = 0,
    world_size: int = 1,
    max_batch_size: int | None = None,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader over length-bucketed batches, reading audio in ``num_workers`` processes.

    ``durations_s`` (one per item) drive the bucketing; they come from the
    corpus's header probe.  Iterating yields :class:`Batch` objects.
    """
    if len(items) != len(durations_s):
        raise ValueError(f"{len(items)} items but {len(durations_s)} durations")
    sampler = BucketBatchSampler(durations_s, max_batch_s, shuffle=shuffle, seed=seed, rank=rank,
                                 world_size=world_size, max_batch_size=max_batch_size)
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": False}
    return DataLoader(AudioDataset(items), batch_sampler=sampler, collate_fn=collate, num_workers=num_workers, **kwargs)


def padded_seconds(durations_s: Sequence[float], batches: Sequence[Sequence[int]]) -> tuple[float, float]:
    """``(audio seconds, padded seconds)`` over ``batches``: how much padding bucketing saves."""
    audio = sum(durations_s[i] for b in batches for i in b)
    padded = sum(len(b) * max(durations_s[i] for i in b) for b in batches if b)
    return audio, padded


__all__ = [
    "AudioDataset",
    "AudioItem",
    "Batch",
    "BucketBatchSampler",
    "Loaded",
    "bucket_batches",
    "collate",
    "make_loader",
    "padded_seconds",
]
