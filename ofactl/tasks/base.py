"""What every downstream task shares: the task description, probe heads, batching and the training loop.

A task (one file each in this package, collected in :data:`ofactl.tasks.TASKS`)
says which corpus layout it reads and which of its splits are train / dev /
test, how to get a label from an :class:`~ofactl.data.corpora.Utterance`,
which probe head it trains, its loss and its metrics (name and direction).

The training loop (:func:`fit`) is the same for all: Adam, one pass over the
training set per epoch in a seeded random order, evaluation on dev after each
epoch, early stopping after ``patience`` epochs without a better dev score,
and the dev-best head state returned.  Batches are padded with the true
number of frames of each utterance (never derived from a nominal rate).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Metric:
    """One number a task reports: ``name`` (a results-table ``metric``) and its direction."""

    name: str
    higher_is_better: bool


@dataclass
class Example:
    """One utterance ready for a probe: its input (features, or cached upstream state) and its target."""

    id: str
    inputs: Any            # a (frames, dim) tensor for fixed features; anything the upstream understands otherwise
    n_frames: int          # frames the probe will see (for batching and feasibility)
    target: Any            # task-specific (class indices, token ids)


@dataclass
class Batch:
    ids: list[str]
    inputs: list[Any]
    targets: list[Any]


class Task:
    """Base class: subclasses set the class attributes and implement the label/vocabulary/head/loss/metrics parts."""

    name: str = ""
    description: str = ""
    layout: str = ""
    #: the corpus splits used for training, early stopping and the final test
    splits: tuple[str, str, str] = ("train", "dev", "test")
    metrics: tuple[Metric, ...] = ()
    #: CTC tasks need at least as many frames as their label sequence (plus repeats)
    ctc: bool = False
    #: default learning rate (the sweep searches a grid around it) and batch size
    lr: float = 1e-3
    batch_size: int = 32
    #: default SGD learning rate of theta with --learn-lambda (REFERENCE.md: 1e-3 PR, 1e-2 SF/IC)
    lambda_lr: float = 1e-2
    #: gradient norm clipping of the head (None: none)
    clip_norm: float | None = None
    #: False for a task scored without training a head (qbe): it implements ``score_splits`` instead of
    #: head/loss/score, and probe/sweep run it once per period (no learning rate, no seeds)
    trainable: bool = True

    # -- labels
    def label(self, utt) -> Any | None:
        """The raw label of an utterance, or None when it has none for this task (left out)."""
        raise NotImplementedError

    def vocabulary(self, train_labels: Sequence[Any]) -> Any:
        """Built from the training labels only (unseen labels in dev/test count as errors)."""
        raise NotImplementedError

    def encode(self, label: Any, vocab: Any) -> Any:
        raise NotImplementedError

    # -- model
    def head(self, in_dim: int, vocab: Any) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, x: Tensor, lengths: Tensor, targets: list[Any]) -> Tensor:
        raise NotImplementedError

    def utterance_stats(self, head: nn.Module, x: Tensor, lengths: Tensor, targets: list[Any],
                        vocab: Any) -> dict[str, np.ndarray]:
        """Sufficient statistics of each utterance of a batch: ``{name: (batch,) array}``.

        A metric is ``finish`` of these summed over a set of utterances, so
        they are what :mod:`ofactl.outcomes` keeps and :mod:`ofactl.stats`
        resamples.
        """
        raise NotImplementedError

    def score(self, head: nn.Module, x: Tensor, lengths: Tensor, targets: list[Any], vocab: Any) -> dict[str, float]:
        """Sufficient statistics of one batch: :meth:`utterance_stats` summed."""
        return {k: float(np.sum(v)) for k, v in self.utterance_stats(head, x, lengths, targets, vocab).items()}

    def finish(self, totals: dict[str, Any]) -> dict[str, Any]:
        """Metric values from the summed statistics.

        Vectorised: a total may be a float or an array of bootstrap replicates
        (every total the same leading shape); use :func:`ratio` for divisions.
        """
        raise NotImplementedError

    def schedule(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        """A learning-rate scheduler stepped after every update, or None for a constant rate (the default)."""
        return None

    def check_requirements(self) -> None:
        """Raise one clear error when an optional package the task needs is missing (checked before extraction)."""

    def layout_of(self, data) -> str:
        """The layout to read ``data`` with: ``lhotse`` for lhotse manifests (labels from the supervisions, split
        names from the file names), else the task's own :attr:`layout`."""
        from pathlib import Path

        from ofactl.data.layouts import lhotse_cuts

        return lhotse_cuts.NAME if lhotse_cuts.find_root(Path(data)) is not None else self.layout

    def no_labels(self, data, split: str):
        """The error for a split with no utterance labelled for this task (a task may say more)."""
        from ofactl.errors import OfactlError

        return OfactlError(f"{data}: split {split!r} has no utterances labelled for task {self.name}",
                           hint=f"task {self.name} reads the {self.layout} layout; check the dataset path")

    def score_splits(self, examples: dict[str, list[Example]], upstream=None) -> tuple[dict[str, float], dict[str, float]]:
        """Dev and test metrics of a task without training (``trainable = False``)."""
        raise NotImplementedError

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    def better(self, a: float, b: float) -> bool:
        """Is dev score ``a`` better than ``b``?"""
        if math.isnan(b):
            return not math.isnan(a)
        return a > b if self.primary.higher_is_better else a < b

    def infeasible(self, example: Example) -> bool:
        """A CTC target that the probe cannot emit in ``n_frames`` frames."""
        if not self.ctc:
            return False
        t = list(example.target)
        repeats = sum(1 for a, b in zip(t, t[1:]) if a == b)
        return example.n_frames < len(t) + repeats


def ratio(num, den):
    """``num / den``, NaN where ``den`` is 0; floats in, float out; arrays in, array out."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)
    return float(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------- heads


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class MeanPoolHead(nn.Module):
    """SUPERB's utterance-level probe: linear projection -> mean over valid frames -> linear."""

    def __init__(self, in_dim: int, n_out: int, proj_dim: int = 256):
        super().__init__()
        self.proj = nn.Linear(in_dim, proj_dim)
        self.out = nn.Linear(proj_dim, n_out)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = self.proj(x)
        mask = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(h.dtype)
        pooled = (h * mask).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(h.dtype)
        return self.out(pooled)


class LinearCTCHead(nn.Module):
    """SUPERB's PR probe: one linear layer over frames; index 0 is the CTC blank."""

    def __init__(self, in_dim: int, n_tokens: int):
        super().__init__()
        self.out = nn.Linear(in_dim, n_tokens + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.out(x)


class BiLSTMCTCHead(nn.Module):
    """SUPERB's ASR probe: a 2-layer bidirectional LSTM, then a linear layer; index 0 is the blank."""

    def __init__(self, in_dim: int, n_tokens: int, hidden: int = 256, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(2 * hidden, n_tokens + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.out(out)


# ----------------------------------------------------------------------------- task families


class ClassificationTask(Task):
    """Utterance-level classification over one or more label fields; a hit needs every field right."""

    fields: tuple[str, ...] = ()
    metrics = (Metric("accuracy", True),)

    def label(self, utt):
        values = [utt.labels.get(f) for f in self.fields]
        return None if any(v is None for v in values) else tuple(str(v) for v in values)

    def vocabulary(self, train_labels):
        return [sorted({lab[i] for lab in train_labels}) for i in range(len(self.fields))]

    def encode(self, label, vocab):
        index = [{v: j for j, v in enumerate(values)} for values in vocab]
        return tuple(index[i].get(v, -1) for i, v in enumerate(label))  # -1: unseen in train, always wrong

    def head(self, in_dim, vocab):
        head = MeanPoolHead(in_dim, sum(len(v) for v in vocab))
        head.sizes = [len(v) for v in vocab]
        return head

    def _split_logits(self, logits: Tensor, vocab) -> list[Tensor]:
        return list(torch.split(logits, [len(v) for v in vocab], dim=-1))

    def loss(self, head, x, lengths, targets):
        logits = head(x, lengths)
        sizes = head.sizes
        parts = torch.split(logits, sizes, dim=-1)
        t = torch.tensor(targets, device=logits.device).view(len(targets), len(sizes))
        return sum(nn.functional.cross_entropy(p, t[:, i], ignore_index=-1) for i, p in enumerate(parts))

    def utterance_stats(self, head, x, lengths, targets, vocab):
        logits = head(x, lengths)
        parts = self._split_logits(logits, vocab)
        t = torch.tensor(targets, device=logits.device).view(len(targets), len(vocab))
        hit = torch.ones(len(targets), dtype=torch.bool, device=logits.device)
        for i, p in enumerate(parts):
            hit &= p.argmax(-1) == t[:, i]
        return {"correct": hit.cpu().numpy().astype(np.float64), "n": np.ones(len(targets))}

    def finish(self, totals):
        return {"accuracy": ratio(totals["correct"], totals["n"])}



class CTCTask(Task):
    """Frame-level CTC over a token sequence; error rate = edit distance / reference length."""

    ctc = True
    head_kind = "linear"

    def tokens(self, label) -> list[str]:
        raise NotImplementedError

    def vocabulary(self, train_labels):
        return sorted({tok for lab in train_labels for tok in self.tokens(lab)})

    def encode(self, label, vocab):
        index = {t: i + 1 for i, t in enumerate(vocab)}  # 0 = blank
        return [index.get(t, len(vocab) + 1) for t in self.tokens(label)]  # unseen token: never emitted

    def head(self, in_dim, vocab):
        head = LinearCTCHead(in_dim, len(vocab)) if self.head_kind == "linear" else BiLSTMCTCHead(in_dim, len(vocab))
        head.n_tokens = len(vocab)
        return head

    def loss(self, head, x, lengths, targets):
        logits = head(x, lengths)
        keep = [i for i, t in enumerate(targets) if 0 < len(t) and _feasible(t, int(lengths[i]))
                and max(t) <= head.n_tokens]
        if not keep:
            return logits.sum() * 0.0
        log_probs = logits[keep].log_softmax(-1).transpose(0, 1)  # (T, B, C)
        flat = torch.tensor([tok for i in keep for tok in targets[i]], dtype=torch.long)
        target_lengths = torch.tensor([len(targets[i]) for i in keep], dtype=torch.long)
        return nn.functional.ctc_loss(log_probs.float(), flat, lengths[keep].cpu(), target_lengths, blank=0,
                                      reduction="mean", zero_infinity=True)

    def decode(self, logits: Tensor, lengths: Tensor) -> list[list[int]]:
        best = logits.argmax(-1).cpu()
        out = []
        for b in range(best.shape[0]):
            seq = torch.unique_consecutive(best[b, : int(lengths[b])]).tolist()
            out.append([s for s in seq if s != 0])
        return out

    def utterance_stats(self, head, x, lengths, targets, vocab):
        from torchaudio.functional import edit_distance

        hyps = self.decode(head(x, lengths), lengths)
        errors = [edit_distance(self.units(h, vocab), self.units(t, vocab)) for h, t in zip(hyps, targets)]
        ref = [len(self.units(t, vocab)) for t in targets]
        return {"errors": np.asarray(errors, dtype=np.float64), "ref": np.asarray(ref, dtype=np.float64)}

    def units(self, ids: list[int], vocab) -> list[str]:
        """What the error rate counts (tokens for PER; words for WER)."""
        return [vocab[i - 1] if 0 < i <= len(vocab) else "<unk>" for i in ids]


def _feasible(target: Sequence[int], n_frames: int) -> bool:
    repeats = sum(1 for a, b in zip(target, target[1:]) if a == b)
    return n_frames >= len(target) + repeats


# ----------------------------------------------------------------------------- batching and the loop


def pad(tensors: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``(batch, max_frames, dim)`` zero-padded, and the true lengths."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    dim = tensors[0].shape[-1]
    out = torch.zeros(len(tensors), max(int(lengths.max()), 1), dim, dtype=torch.float32)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]].copy_(t)  # converts in place: no temporary per utterance
    return out, lengths


def batches(examples: Sequence[Example], batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
    """One epoch of batches with their inputs loaded: seeded and length-bucketed when ``generator`` is given, else
    length-sorted (evaluation).  See :class:`ofactl.stream.ExampleLoader`."""
    from ofactl.stream import ExampleLoader

    return iter(ExampleLoader(examples, batch_size, generator))


def fixed_upstream(inputs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The upstream of a probe on stored features: just pad them."""
    return pad(inputs)


Upstream = Callable[[list[Any]], tuple[Tensor, Tensor]]


class Standardize:
    """An upstream that pads stored features and standardises each dimension with training-set statistics.

    A per-dimension affine map changes nothing a linear probe can express, but
    it conditions the optimisation: frozen features (especially of a small or
    barely trained model) can carry the information in directions with a tiny
    variance compared with the shared offset, where plain Adam on the raw
    features stalls.  Padding stays zero.
    """

    def __init__(self, mean: Tensor, std: Tensor):
        self.mean, self.std = mean.float(), std.float().clamp(min=1e-5)

    @classmethod
    def fit(cls, tensors: Iterable[Tensor]) -> "Standardize":
        """Statistics of the frames of ``tensors`` (tensors, or :class:`~ofactl.stream.Stored` read one at a time).

        Sums in float64 through two reused buffers: no temporary per utterance, so that a pass over a large
        split does not fragment the heap (its resident memory stays flat)."""
        from ofactl.stream import load

        total = total_sq = buf = sq = None
        n = 0
        for t in tensors:
            t = load(t)
            m = t.shape[0]
            if buf is None or buf.shape[0] < m:
                buf = torch.empty(max(m, 1024), t.shape[-1], dtype=torch.float64)
                sq = torch.empty_like(buf)
                total = total if total is not None else torch.zeros(t.shape[-1], dtype=torch.float64)
                total_sq = total_sq if total_sq is not None else torch.zeros(t.shape[-1], dtype=torch.float64)
            x = buf[:m]
            x.copy_(t)
            total += x.sum(0)
            total_sq += torch.mul(x, x, out=sq[:m]).sum(0)
            n += m
        mean = total / max(n, 1)
        var = (total_sq / max(n, 1) - mean * mean).clamp(min=0)
        return cls(mean.float(), var.sqrt().float())

    def apply(self, x: Tensor, lengths: Tensor) -> Tensor:
        mask = valid_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1)
        return ((x - self.mean.to(x.device)) / self.std.to(x.device)) * mask

    def __call__(self, inputs: list[Tensor]) -> tuple[Tensor, Tensor]:
        x, lengths = pad(inputs)
        # in place on the fresh padded batch (the same values as apply, without a batch-sized temporary per step)
        x.sub_(self.mean).div_(self.std).mul_(valid_mask(lengths, x.shape[1]).unsqueeze(-1))
        return x, lengths


@torch.no_grad()
def score_examples(task: Task, head: nn.Module, examples: Sequence[Example], vocab, upstream: Upstream = fixed_upstream,
                   batch_size: int = 64, device: str | torch.device = "cpu", with_loss: bool = False):
    """Per-utterance statistics of ``head`` on ``examples`` (a split, or an evaluation
    :class:`~ofactl.stream.ExampleLoader` over one): an :class:`~ofactl.outcomes.Outcomes`
    (and the mean loss with ``with_loss``, else None)."""
    from ofactl.outcomes import Outcomes
    from ofactl.stream import ExampleLoader

    was = head.training
    head.eval()
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {}
    loss_sum, n = 0.0, 0
    loader = examples if isinstance(examples, ExampleLoader) else ExampleLoader(examples, batch_size)
    for batch in loader:
        x, lengths = upstream(batch.inputs)
        x, lengths = x.to(device), lengths.to(device)
        for k, v in task.utterance_stats(head, x, lengths, batch.targets, vocab).items():
            parts.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        ids.extend(batch.ids)
        if with_loss:
            loss_sum += float(task.loss(head, x, lengths, batch.targets)) * len(batch.ids)
            n += len(batch.ids)
    head.train(was)
    outcomes = Outcomes(task.name, ids, {k: np.concatenate(v) for k, v in parts.items()})
    return outcomes, (loss_sum / max(n, 1) if with_loss else None)


def evaluate(task: Task, head: nn.Module, examples: Sequence[Example], vocab, upstream: Upstream = fixed_upstream,
             batch_size: int = 64, device: str | torch.device = "cpu", with_loss: bool = False) -> dict[str, float]:
    """Metrics of ``head`` on ``examples`` (and the mean loss, key ``loss``, with ``with_loss``)."""
    outcomes, loss = score_examples(task, head, examples, vocab, upstream, batch_size, device, with_loss)
    totals = {k: float(v.sum()) for k, v in outcomes.stats.items()}
    metrics = {k: float(v) for k, v in task.finish(totals).items()}
    if with_loss:
        metrics["loss"] = loss
    return metrics


@dataclass
class FitResult:
    head: nn.Module               # with the dev-best weights loaded
    dev: dict[str, float]         # dev metrics of the best epoch
    best_epoch: int
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    extra_state: Any = None       # the upstream's trainable state at the best epoch (adaptive lambda)


def fit(
    task: Task,
    train: Sequence[Example],
    dev: Sequence[Example],
    vocab,
    in_dim: int,
    *,
    lr: float,
    seed: int = 0,
    max_epochs: int = 50,
    patience: int = 5,
    batch_size: int | None = None,
    upstream: Upstream = fixed_upstream,
    extra_optimizer: torch.optim.Optimizer | None = None,
    extra_loss: Callable[[], Tensor] | None = None,
    extra_state: Callable[[], Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    device: str | torch.device = "cpu",
    workers: int | None = None,
) -> FitResult:
    """Train a fresh probe head with Adam; early stopping on the dev primary metric.

    Deterministic for a given ``seed`` (head initialisation and batch order).
    ``upstream(inputs) -> (x, lengths)`` turns a batch's inputs into padded
    features; with ``extra_optimizer`` its parameters (e.g. theta of an
    adaptive lambda) are trained jointly, ``extra_loss()`` is added to the
    task loss (a rate penalty), and ``extra_state()`` is snapshotted with the
    dev-best head.  ``workers``: loader processes reading stored inputs ahead (default: see
    :class:`ofactl.stream.ExampleLoader`).
    """
    from ofactl.stream import ExampleLoader

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    head = task.head(in_dim, vocab).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    bs = batch_size or task.batch_size
    train_loader = ExampleLoader(train, bs, generator, workers=workers)  # one per fit: its workers persist
    scheduler = task.schedule(optimizer, max(len(train_loader), 1))
    dev_loader = ExampleLoader(dev, 64, workers=workers)
    best_state, best_extra, best_dev, best_epoch = None, None, {}, -1
    best_score, best_loss = float("nan"), float("inf")
    history = []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        head.train()
        for batch in train_loader:
            x, lengths = upstream(batch.inputs)
            loss = task.loss(head, x.to(device), lengths.to(device), batch.targets)
            if extra_loss is not None:
                loss = loss + extra_loss()
            optimizer.zero_grad()
            if extra_optimizer is not None:
                extra_optimizer.zero_grad()
            if loss.requires_grad:
                loss.backward()
                if task.clip_norm is not None:
                    nn.utils.clip_grad_norm_(head.parameters(), task.clip_norm)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if extra_optimizer is not None:
                    extra_optimizer.step()
        scores = evaluate(task, head, dev_loader, vocab, upstream, device=device, with_loss=True)
        history.append(scores)
        if on_epoch is not None:
            on_epoch(epoch, scores)
        score = scores[task.primary.name]
        # a tie on the metric (common with small dev sets) is broken by the dev loss
        improved = (best_state is None or task.better(score, best_score)
                    or (score == best_score and scores["loss"] < best_loss))
        if improved:
            best_score, best_loss, best_dev, best_epoch = score, scores["loss"], scores, epoch
            best_state = copy.deepcopy(head.state_dict())
            best_extra = copy.deepcopy(extra_state()) if extra_state is not None else None
        elif epoch - best_epoch >= patience:
            break
    train_loader.close()
    dev_loader.close()
    head.load_state_dict(best_state)
    return FitResult(head, best_dev, best_epoch, epoch, history, best_extra)
