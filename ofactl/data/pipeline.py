"""The one way audio reaches a model: :func:`iter_batches`.

Extraction, calibration, segmentation, adaptive lambda, pretraining and
teacher training all read their audio here.  :func:`iter_batches` turns a list
of utterances into work items, in one pass:

* :class:`Batch`: padded, length-bucketed audio (at most ``max_batch_s``
  padded seconds, see :mod:`ofactl.data.batching`), read and resampled in
  ``num_workers`` DataLoader processes; with ``crop_s`` each utterance is cut
  to a window whose start depends only on (seed, epoch, utterance), so a
  resumed run reads exactly the crops the uninterrupted run would have;
* :class:`Long`: one utterance longer than ``chunk_s``, read whole, for a
  model's chunked path;
* :class:`~ofactl.data.problems.Problem`: a file that could not be read (the
  job records it and goes on).

Utterances are any objects with ``id``, ``path``, ``offset_s`` and
``duration_s`` (:class:`ofactl.data.corpora.Utterance` after ``probe``, or
:class:`AudioItem`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ofactl.data.audio import AudioError, load_audio
from ofactl.data.batching import BucketBatchSampler
from ofactl.data.problems import Problem
from ofactl.period import HOP_SAMPLES, SAMPLE_RATE  # crop starts are whole CNN frames: segments crop by frames
from ofactl.progress import Progress


@dataclass(frozen=True)
class AudioItem:
    """One utterance to read: path, offset and duration (None: to the end of the file)."""

    id: str
    path: str
    offset_s: float = 0.0
    duration_s: float | None = None


class Batch(NamedTuple):
    """A padded batch.

    Attributes:
        audio: ``(batch, samples)`` float32, zero-padded.
        lengths: ``(batch,)`` valid samples.
        ids: utterance ids, in batch order.
        indices: positions in the utterance list given to :func:`iter_batches`, in batch order.
        starts: where each row starts within its utterance, in samples (0 unless cropped).
    """

    audio: Tensor
    lengths: Tensor
    ids: list[str]
    indices: list[int]
    starts: list[int]


class Long(NamedTuple):
    """A long utterance, read whole, for a model's chunked path."""

    id: str
    wave: Tensor


def crop_start(seed: int, epoch: int, index: int, length: int, crop: int, hop: int = HOP_SAMPLES) -> int:
    """A start in ``[0, length - crop]``, a multiple of ``hop``, from a hash of its inputs."""
    if length <= crop:
        return 0
    slots = (length - crop) // hop + 1
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") % slots) * hop


class _Read(NamedTuple):
    index: int
    id: str
    wave: Tensor | None
    start: int
    problem: Problem | None


class _Reader(Dataset):
    """Reads one utterance (key ``(index, epoch)``), cut to ``crop_samples`` when given; a bad file is a record."""

    def __init__(self, items: Sequence, crop_samples: int | None, seed: int):
        self.items = [AudioItem(u.id, str(u.path), float(getattr(u, "offset_s", 0.0) or 0.0), u.duration_s)
                      for u in items]
        self.crop_samples = crop_samples
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> _Read:
        index, epoch = key
        item = self.items[index]
        try:
            wave = load_audio(item.path, start_s=item.offset_s, duration_s=item.duration_s)
        except AudioError as err:
            return _Read(index, item.id, None, 0, err.problem(item.id))
        start = 0
        if self.crop_samples is not None:
            start = crop_start(self.seed, epoch, index, wave.shape[0], self.crop_samples)
            wave = wave[start : start + self.crop_samples]
        return _Read(index, item.id, wave, start, None)


def _collate(reads: Sequence[_Read]) -> tuple[Batch, list[Problem]]:
    good = [r for r in reads if r.wave is not None]
    lengths = torch.tensor([int(r.wave.shape[0]) for r in good], dtype=torch.long)
    audio = torch.zeros(len(good), int(lengths.max()) if good else 0, dtype=torch.float32)
    for row, r in enumerate(good):
        audio[row, : r.wave.shape[0]] = r.wave
    batch = Batch(audio, lengths, [r.id for r in good], [r.index for r in good], [r.start for r in good])
    return batch, [r.problem for r in reads if r.problem is not None]


class _EpochKeys(Sampler[list[tuple[int, int]]]):
    """A :class:`BucketBatchSampler`'s batches as ``[(index, epoch), ...]`` (crops depend on the epoch)."""

    def __init__(self, sampler: BucketBatchSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler:
            yield [(i, self.sampler.epoch) for i in batch]

    def __len__(self) -> int:
        return len(self.sampler)


def iter_batches(
    utterances: Sequence,
    *,
    max_batch_s: float = 160.0,
    max_batch_size: int | None = None,
    chunk_s: float = math.inf,
    crop_s: float | None = None,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 2,
    pin_memory: bool = False,
    progress: Progress | None = None,
    done: int = 0,
    total: int | None = None,
) -> Iterator[Batch | Long | Problem]:
    """The audio of ``utterances`` as :class:`Batch` es, :class:`Long` s and :class:`Problem` s.

    Args:
        utterances: with ``id``, ``path``, ``offset_s`` and ``duration_s`` (known: it drives the bucketing).
        max_batch_s, max_batch_size: the bucketing budget (padded seconds, and optionally utterances).
        chunk_s: utterances longer than this come one at a time as :class:`Long` (after the batches).
        crop_s: cut every utterance to at most this many seconds, at a start drawn from (seed, epoch,
            utterance); the bucketing then uses the cropped durations.
        shuffle, seed, epoch, start: the batch order of ``epoch`` (shuffled from ``seed + epoch``), skipping its
            first ``start`` batches (a resumed epoch).
        rank, world_size: this process's share of the batches (every rank gets as many).
        num_workers: audio-reading processes (0: read in this process).
        pin_memory: page-locked batches, for a CUDA device.
        progress: called as ``progress(done, total, "")`` after each item, counting utterances from ``done``
            (default 0) of ``total`` (default: ``done`` plus the number of utterances).

    The loader's worker seeds come from a generator seeded with ``seed``, so reading never draws from torch's
    global random state.
    """
    utterances = list(utterances)
    total = len(utterances) + done if total is None else total
    short = [i for i, u in enumerate(utterances) if u.duration_s <= chunk_s]
    if short:
        crop = None if crop_s is None else int(round(crop_s * SAMPLE_RATE))
        durations = [utterances[i].duration_s if crop_s is None else min(utterances[i].duration_s, crop_s)
                     for i in short]
        sampler = BucketBatchSampler(durations, max_batch_s, shuffle=shuffle, seed=seed, rank=rank,
                                     world_size=world_size, max_batch_size=max_batch_size)
        sampler.set_epoch(epoch, start=start)
        options = {"prefetch_factor": 2} if num_workers > 0 else {}
        loader = DataLoader(_Reader([utterances[i] for i in short], crop, seed), batch_sampler=_EpochKeys(sampler),
                            collate_fn=_collate, num_workers=num_workers, pin_memory=pin_memory,
                            generator=torch.Generator().manual_seed(seed), **options)
        for batch, problems in loader:
            yield from problems
            if batch.ids:
                yield batch._replace(indices=[short[i] for i in batch.indices])
            done += len(batch.ids) + len(problems)
            if progress:
                progress(done, total, "")
    for u in utterances:
        if u.duration_s <= chunk_s:
            continue
        try:
            wave = load_audio(u.path, start_s=u.offset_s, duration_s=u.duration_s)
        except AudioError as err:
            yield err.problem(u.id)
        else:
            yield Long(u.id, wave)
        done += 1
        if progress:
            progress(done, total, "")


__all__ = ["AudioItem", "Batch", "HOP_SAMPLES", "Long", "crop_start", "iter_batches"]
