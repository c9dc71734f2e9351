"""What a downstream task is: its description, its metrics, and the two families most tasks belong to.

A task (one file each in this package, collected in :data:`ofactl.tasks.TASKS`)
says which corpus layout it reads and which of its splits are train / dev /
test, how to get a label from an :class:`~ofactl.data.corpora.Utterance`,
which probe head it trains (:mod:`ofactl.tasks.heads`), its loss and its
metrics (name and direction).  :class:`ClassificationTask` (utterance labels)
and :class:`CTCTask` (label sequences) implement those for most tasks; the
loop that trains and scores a head is :mod:`ofactl.tasks.loop`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ofactl.tasks.heads import BiLSTMCTCHead, LinearCTCHead, MeanPoolHead

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
