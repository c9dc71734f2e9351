"""Length-bucketed batching: which utterances go together (reading them is :mod:`ofactl.data.pipeline`'s).

* :class:`BucketBatchSampler` groups utterances of similar length so that a
  batch holds at most ``max_batch_s`` seconds of *padded* audio (batch size x
  longest utterance: that is what memory and compute pay for).  Deterministic
  for a seed and epoch, shardable across distributed ranks, and resumable from
  a batch position.
* :func:`padded_seconds` says how much padding a batching costs.
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

from torch.utils.data import Sampler


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


def padded_seconds(durations_s: Sequence[float], batches: Sequence[Sequence[int]]) -> tuple[float, float]:
    """``(audio seconds, padded seconds)`` over ``batches``: how much padding bucketing saves."""
    audio = sum(durations_s[i] for b in batches for i in b)
    padded = sum(len(b) * max(durations_s[i] for i in b) for b in batches if b)
    return audio, padded


__all__ = ["BucketBatchSampler", "bucket_batches", "padded_seconds"]
