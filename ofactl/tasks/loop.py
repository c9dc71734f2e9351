"""The probe loop shared by every trainable task: padding, standardisation, scoring and :func:`fit`.

:func:`fit` is the same for all tasks: Adam (with the task's learning-rate
schedule and gradient clipping, when it has them), one pass over the training
set per epoch in a seeded random order, evaluation on dev after each epoch,
early stopping after ``patience`` epochs without a better dev score, and the
dev-best head state returned.  Batches are padded with the true number of
frames of each utterance (never derived from a nominal rate).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ofactl.layers import valid_mask
from ofactl.tasks.base import Batch, Example, Task

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
