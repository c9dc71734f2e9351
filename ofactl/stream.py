"""Probe inputs streamed from feature files: references, length-bucketed batches, a bounded read-ahead.

A probe never holds a large split in memory.  Each :class:`~ofactl.tasks.base.Example`
carries a :class:`Stored` reference (file, utterance id, how many frames)
instead of its features; :class:`ExampleLoader` draws the epoch's batches
(seeded, length-bucketed), and a DataLoader worker reads each batch from the
HDF5 file while the probe trains on the one before (``prefetch`` batches
ahead at most).  Memory is one model's head, the batches in flight and the
per-utterance bookkeeping (ids, lengths, targets), whatever the corpus size.
A split whose features take at most :data:`HOLD_BYTES` (256 MB) is read once
and kept for the later epochs of that training run: a bounded amount, which
spares small splits (dev sets, small corpora) a read per epoch.

Training order: the epoch's random permutation (from the probe's seeded
generator) is cut into spans of ``bucket`` batches, each span is sorted by
length and cut into batches, and the batches are shuffled.  Batches hold
utterances of similar length (less padding, what fairseq and lhotse do) and
the order still changes every epoch.  Evaluation reads in length order.

Examples whose inputs are already tensors (built in memory, e.g. by a test)
go through the same batches with no reading, so the two paths train the same
head from the same seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from ofactl.period import FRAME_MS

#: batches per length-sorted span of a training epoch
BUCKET_BATCHES = 50
#: a split whose stored inputs take at most this many bytes is read once and kept for later epochs
HOLD_BYTES = 256 * 2**20


def pooled_length(n: int, period_ms: float) -> int:
    """Frames of an ``n``-frame 20 ms sequence average-pooled to ``period_ms``: ``max(1, round(n * 20 / period))``,
    never more than ``n``."""
    return min(n, max(1, round(n * FRAME_MS / period_ms)))


def average_pool(x: torch.Tensor, period_ms: float) -> torch.Tensor:
    """``(N, D)`` 20 ms features -> ``(pooled_length(N), D)`` means of contiguous, near-equal runs."""
    n = x.shape[0]
    m = pooled_length(n, period_ms)
    if m >= n:
        return x
    bounds = [round(j * n / m) for j in range(m + 1)]
    xf = x.float()
    return torch.stack([xf[a:b].mean(0) for a, b in zip(bounds, bounds[1:])]).to(x.dtype)


@dataclass(frozen=True)
class Stored:
    """One utterance's features in a complete features file, read on :meth:`load`.

    ``pool_ms``: average-pool the stored 20 ms features to this period when
    read.  ``layers``: the file holds every layer (:mod:`ofactl.tasks.weighted`).  ``pre_cif``: a pre-CIF file (:mod:`ofactl.adaptive`): ``load``
    returns its CNN features and alpha weights as a
    :class:`~ofactl.adaptive.Cached`.
    """

    path: str
    id: str
    pool_ms: float | None = None
    pre_cif: bool = False
    duration_s: float = 0.0
    layers: bool = False  # a layer="all" file: (layers, frames, dim) is read as (frames, layers x dim)

    def load(self) -> Any:
        array = torch.from_numpy(_handle(self.path)[self.id]["features"][()])
        if self.layers:
            array = array.permute(1, 0, 2).reshape(array.shape[1], -1)
        if self.pre_cif:
            from ofactl.adaptive import Cached

            return Cached(array[:, :-1], array[:, -1], self.duration_s)
        return average_pool(array, self.pool_ms) if self.pool_ms else array


def load(inputs: Any) -> Any:
    """An example's inputs, read from disk when they are :class:`Stored`."""
    return inputs.load() if isinstance(inputs, Stored) else inputs


# one open, validated handle per file and process (h5py handles do not survive a fork)
_HANDLES: dict[tuple[int, str], Any] = {}


def _handle(path: str):
    key = (os.getpid(), path)
    st = os.stat(path)
    ident = (st.st_ino, st.st_mtime_ns)
    cached = _HANDLES.get(key)
    if cached is not None and cached[1] == ident:
        return cached[0]
    from ofactl.features import open_features

    if cached is not None:  # the file was replaced (re-extracted): read the new one
        _close(key)
    for stale in [k for k in _HANDLES if k[0] != key[0]]:
        _HANDLES.pop(stale, None)  # inherited from a parent process: never used here
    if len(_HANDLES) >= 64:
        close_handles()
    f = open_features(path)
    _HANDLES[key] = (f, ident)
    return f


def _close(key) -> None:
    try:
        _HANDLES.pop(key)[0].close()
    except Exception:  # noqa: BLE001 - closing a file that is already gone
        pass


def close_handles() -> None:
    """Close this process's open feature files (before forking loader workers, and when a probe is done)."""
    pid = os.getpid()
    for key in [k for k in _HANDLES if k[0] == pid]:
        _close(key)


def stored_lengths(path: str | os.PathLike[str]) -> dict[str, tuple[int, float]]:
    """``{utterance id: (frames, duration_s)}`` of a complete features file, from its metadata (no features read)."""
    from ofactl.features import open_features, utterance_ids

    with open_features(path) as f:
        return {u: (int(f[u]["features"].shape[-2]), float(f[u].attrs.get("duration_s", 0.0)))
                for u in utterance_ids(f)}


# ----------------------------------------------------------------------------- batches


def epoch_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
                  keys: Sequence[str] | None = None, bucket: int = BUCKET_BATCHES) -> list[list[int]]:
    """One epoch's batches of indices: seeded and length-bucketed with ``generator``, else in length order
    (ties by ``keys``)."""
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: (lengths[i], keys[i] if keys is not None else i))
        return [order[s:s + batch_size] for s in range(0, n, batch_size)]
    perm = torch.randperm(n, generator=generator).tolist()
    span = batch_size * bucket
    out: list[list[int]] = []
    for s in range(0, n, span):
        chunk = sorted(perm[s:s + span], key=lambda i: lengths[i])
        out += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    shuffle = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in shuffle]


class _Reader(torch.utils.data.Dataset):
    """Reads a whole batch (a list of indices) of example inputs; runs in a loader worker."""

    def __init__(self, inputs: list[Any]):
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, indices: list[int]) -> Any:
        items = [load(self.inputs[i]) for i in indices]
        if items and all(isinstance(x, torch.Tensor) and x.ndim == 2 for x in items):
            # one tensor per batch crosses to the training process (one shared-memory segment, not one per utterance)
            return torch.cat(items), [x.shape[0] for x in items]
        return items


def _unpack(batch: Any) -> list[Any]:
    """A worker's batch as a list of inputs (views into the one tensor it sent)."""
    if isinstance(batch, tuple):
        cat, lengths = batch
        return list(torch.split(cat, lengths))
    return batch


class _Order(torch.utils.data.Sampler):
    """The batches of the epoch being read (set by :class:`ExampleLoader` before each pass)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _first(batch):
    return batch


def _worker_init(_worker_id: int) -> None:
    _HANDLES.clear()  # the parent's handles are not ours to use or close


def _nbytes(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    return sum(_nbytes(v) for v in vars(x).values() if isinstance(v, torch.Tensor))


def default_workers() -> int:
    """Loader processes for stored inputs: none on a machine of fewer than 4 CPUs, where a process would take a
    core from training and reading in a thread of this process is faster (measured: ``benchmarks/bench_probe.py``),
    else 2."""
    return 0 if (os.cpu_count() or 1) < 4 else 2


def _read_ahead(examples, batches: list[list[int]], depth: int) -> Iterator[list[Any]]:
    """The batches' inputs, read by a background thread at most ``depth`` batches ahead (h5py reads overlap the
    training step, which releases the GIL in torch's kernels)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work() -> None:
        try:
            for idx in batches:
                if stop.is_set():
                    return
                q.put([load(examples[i].inputs) for i in idx])
            q.put(None)
        except BaseException as err:  # noqa: BLE001 - raised again in the consumer
            q.put(err)

    thread = threading.Thread(target=work, name="ofactl-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class ExampleLoader:
    """Batches of examples with their inputs loaded: ``for batch in loader`` is one epoch.

    Args:
        examples: the split (inputs :class:`Stored` or in memory).
        batch_size: examples per batch.
        generator: seeded training order (a new order every epoch); None reads in length order.
        workers: loader worker processes reading ahead (default: :func:`default_workers` when the inputs are on
            disk; 0 reads ahead in a thread of this process).
        prefetch: batches each worker (or the thread) reads ahead: the bound on memory in flight.
    """

    def __init__(self, examples: Sequence[Any], batch_size: int, generator: torch.Generator | None = None,
                 workers: int | None = None, prefetch: int = 2, hold_bytes: int = HOLD_BYTES):
        self.examples = examples
        self.batch_size = batch_size
        self.generator = generator
        self.lengths = [int(e.n_frames) for e in examples]
        self.keys = [e.id for e in examples]
        self.stored = any(isinstance(e.inputs, Stored) for e in examples)
        self.workers = (default_workers() if self.stored else 0) if workers is None else (
            workers if self.stored else 0)
        self.prefetch = prefetch
        self.hold_bytes = hold_bytes
        self._held: list[Any] | None = None   # a small split's inputs, kept after the first epoch
        self._order = _Order()
        self._loader = None

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        from ofactl.tasks.base import Batch

        batches = epoch_batches(self.lengths, self.batch_size, self.generator, self.keys)
        if self._held is None and self.stored and self.examples and self._fits():
            self._held = [None] * len(self.examples)
            for idx in batches:  # the first epoch reads (ahead) and keeps
                inputs = [load(self.examples[i].inputs) for i in idx]
                for i, x in zip(idx, inputs):
                    self._held[i] = x
            # fall through: this epoch, like the later ones, is served from what is held
        if self._held is not None:
            for idx in batches:
                chunk = [self.examples[i] for i in idx]
                yield Batch([e.id for e in chunk], [self._held[i] for i in idx], [e.target for e in chunk])
            return
        if self.workers == 0:
            reads = _read_ahead(self.examples, batches, self.prefetch) if self.stored else (
                [load(self.examples[i].inputs) for i in idx] for idx in batches)
            for idx, inputs in zip(batches, reads):
                chunk = [self.examples[i] for i in idx]
                yield Batch([e.id for e in chunk], inputs, [e.target for e in chunk])
            return
        if self._loader is None:
            close_handles()  # nothing open is inherited by the workers
            self._loader = torch.utils.data.DataLoader(
                _Reader([e.inputs for e in self.examples]), batch_size=None, sampler=self._order,
                num_workers=self.workers, prefetch_factor=self.prefetch, persistent_workers=True,
                collate_fn=_first, worker_init_fn=_worker_init)
        self._order.batches = batches
        for idx, inputs in zip(batches, self._loader):
            chunk = [self.examples[i] for i in idx]
            yield Batch([e.id for e in chunk], _unpack(inputs), [e.target for e in chunk])

    def _fits(self) -> bool:
        """Whether the whole split takes at most ``hold_bytes`` (from its frame counts and one utterance's size)."""
        first = load(self.examples[0].inputs)
        per_frame = _nbytes(first) / max(int(self.examples[0].n_frames), 1)
        return per_frame * sum(self.lengths) <= self.hold_bytes

    def close(self) -> None:
        """Stop the workers (they also stop when the loader is garbage-collected) and drop what is held."""
        self._loader = None
        self._held = None


__all__ = ["BUCKET_BATCHES", "ExampleLoader", "Stored", "average_pool", "close_handles", "epoch_batches", "load",
           "pooled_length", "stored_lengths"]
