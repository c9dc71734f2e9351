"""Adaptive compressing rate: learn lambda jointly with a downstream probe (REFERENCE.md).

``lambda = lambda_max * sigmoid(theta)``; theta is trained by SGD (momentum
0.9) at the same time as the probe head (Adam), from the loss of the task
plus an optional rate penalty ``W * (output frames per 20 ms input frame)``
(the differentiable count ``sum_t alpha_mod / T``).  The student stays
frozen.  Its 20 ms part (CNN features and alpha) does not depend on lambda,
so it runs once per utterance and is cached on disk (a pre-CIF features file per split, streamed
like any probe input, :mod:`ofactl.stream`); ``modify_alpha``, the
CIF and the transformer run on every batch with the tensor lambda, so the
gradient reaches theta through the CIF weights.

The dev-best epoch gives both the head and lambda; the test metrics, the
learned lambda and the frame period it gives on the test split (measured:
audio seconds / output frames) go into the results table
(``target_period_ms`` empty, the initial lambda in ``note``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ofactl.errors import OfactlError
from ofactl.results import ResultRow
from ofactl.tasks import Task, get_task
from ofactl.tasks.base import Example
from ofactl.tasks.loop import Standardize, fit, score_examples


@dataclass
class Cached:
    """The lambda-independent part of one utterance: CNN features ``(T, C)`` and alpha ``(T,)`` (read from the
    pre-CIF cache, see :func:`_cache_split`)."""

    features: Tensor
    alpha: Tensor
    duration_s: float


def _check_init(lam_init: float, lam_max: float) -> None:
    if not 0.0 < lam_init < lam_max:
        raise OfactlError(f"--lambda-init must lie in (0, {lam_max:g}) (lambda_max of this model), found {lam_init:g}")


class AdaptiveUpstream:
    """Frozen student back end with a trainable lambda; callable as ``upstream(inputs) -> (x, lengths)``."""

    def __init__(self, student, lam_max: float, lam_init: float, layer: str | int = "last", precision: str = "fp32"):
        from ofactl.inference import parse_layer

        _check_init(lam_init, lam_max)
        self.student = student
        self.lam_max = lam_max
        p = lam_init / lam_max
        self.theta = torch.nn.Parameter(torch.tensor(math.log(p / (1 - p)), dtype=torch.float32))
        self.layer = parse_layer(layer, len(student.encoder.transformer.layers))
        if self.layer == "all":
            raise OfactlError("--learn-lambda needs one layer, not --layer all")
        self.norm: Standardize | None = None
        self.last_rate: Tensor | None = None
        self.device = next(student.parameters()).device
        self.precision = precision  # resolved (fp32 or bf16): the CIF and transformer run under it

    @property
    def lam(self) -> Tensor:
        return self.lam_max * torch.sigmoid(self.theta)

    def encode(self, inputs: list[Cached]) -> tuple[Tensor, Tensor, Tensor]:
        lengths = torch.tensor([c.features.shape[0] for c in inputs], dtype=torch.long)
        T = int(lengths.max())
        feats = torch.zeros(len(inputs), T, inputs[0].features.shape[1])
        alpha = torch.zeros(len(inputs), T)
        for i, c in enumerate(inputs):
            feats[i, : c.features.shape[0]] = c.features
            alpha[i, : c.alpha.shape[0]] = c.alpha
        feats, alpha, lengths = feats.to(self.device), alpha.to(self.device), lengths.to(self.device)
        lam = self.lam.to(self.device)
        from ofactl.precision import autocast

        with autocast(self.device, self.precision):
            out = self.student.back(feats, lengths, alpha, lam, predict=False)
        self.last_rate = out.alpha_mod.sum() / lengths.sum().clamp(min=1)
        return out.hidden_states[self.layer].float(), out.lengths, lengths

    def __call__(self, inputs: list[Cached]) -> tuple[Tensor, Tensor]:
        x, lengths, _ = self.encode(inputs)
        if self.norm is not None:
            x = self.norm.apply(x, lengths)
        return x, lengths


def _cache_split(model, data, task: Task, split: str, out: Path) -> Path:
    """The pre-CIF features of one split, cached at ``out``: a features file (crash-safe and resumable like any
    other) whose ``features`` are each utterance's CNN features with its alpha weights as the last column,
    float32 so that the CIF fires exactly as on fresh features.  Reused when complete."""
    from ofactl.data.corpora import probe, read_corpus
    from ofactl.data.pipeline import iter_batches
    from ofactl.data.problems import Problem
    from ofactl.features import FeatureWriter, is_complete, read_attrs, run_fingerprint

    attrs = {"content": "pre-cif", "layer": 0, "lambda": 0.0, "model_sha256": model.model_sha256,
             "data": str(Path(data).resolve()), "split": split, "task": task.name, "precision": model.precision}
    if is_complete(out) and read_attrs(out).get("run_fingerprint") == run_fingerprint(attrs, "float32"):
        return out
    corpus = probe(read_corpus(data, task.layout_of(data), split=split))
    out.parent.mkdir(parents=True, exist_ok=True)
    # a cache: anything else at the path (other settings, an unreadable file) is replaced
    with FeatureWriter(out, attrs, dtype="float32", overwrite=out.exists()) as writer, torch.inference_mode():
        todo = [u for u in sorted(corpus.utterances, key=lambda u: u.id) if u.id not in writer.done_ids]
        # one utterance per forward: the cached weights are those of the utterance alone, bit for bit
        for item in iter_batches(todo, max_batch_size=1, num_workers=0):
            if isinstance(item, Problem):
                writer.skip(item)
                continue
            audio = item.audio.to(model.device)
            with model.autocast():
                feats, frame_lengths, alpha = model.student.front(audio, item.lengths.to(model.device))
            n = int(frame_lengths[0])
            both = torch.cat([feats[0, :n].float(), alpha[0, :n].float()[:, None]], dim=1).cpu()
            times = (torch.arange(n, dtype=torch.float64) + 0.5) * (model.hop_samples / model.sample_rate)
            writer.write([(item.ids[0], both, times, int(item.lengths[0]) / model.sample_rate, 0.0)])
    return out


def _stored_split(path: Path, labels: dict[str, Any], task: Task, vocab) -> list[Example]:
    """Examples referring to the pre-CIF features at ``path`` (read on demand, see :mod:`ofactl.stream`)."""
    from ofactl.stream import Stored, stored_lengths

    return [Example(i, Stored(str(path), i, pre_cif=True, duration_s=d), n, task.encode(labels[i], vocab))
            for i, (n, d) in sorted(stored_lengths(path).items()) if i in labels]


def _lam_max(model) -> float:
    cal = model.calibration
    if cal is not None:
        value = float(cal.lam_max)
    else:
        value = float(model.training.get("lambda_max") or 2.0)
    return min(value, 2.0 - 1e-3)


@torch.no_grad()
def _measured_period_ms(upstream: AdaptiveUpstream, examples: list[Example], batch_size: int = 32) -> float:
    from ofactl.stream import ExampleLoader

    frames, seconds = 0, 0.0
    for batch in ExampleLoader(examples, batch_size):
        _, lengths, _ = upstream.encode(batch.inputs)
        frames += int(lengths.sum())
        seconds += sum(c.duration_s for c in batch.inputs)
    return 1000 * seconds / max(frames, 1)


def _standardize(upstream: AdaptiveUpstream, examples: list[Example]) -> tuple[Standardize, int]:
    """Train-set statistics of the upstream's output at its initial lambda, streamed one batch at a time."""
    from ofactl.stream import ExampleLoader

    dims = []

    def frames():
        for batch in ExampleLoader(examples, 32):
            x, lengths, _ = upstream.encode(batch.inputs)
            dims.append(x.shape[-1])
            yield from (x[b, : int(lengths[b])].cpu() for b in range(x.shape[0]))

    norm = Standardize.fit(frames())
    return norm, dims[0]


def check_learnable(task: Task | str) -> Task:
    """The task, or one error line when it trains nothing (qbe), so that no lambda can be learned with it."""
    task = get_task(task) if isinstance(task, str) else task
    if not task.trainable:
        raise OfactlError(f"task {task.name} trains nothing, so --learn-lambda has no loss to learn lambda from",
                          hint=f"probe it at fixed periods: `ofactl probe --task {task.name} --period P`, or "
                               f"`ofactl sweep --task {task.name}`")
    return task


def run_adaptive(
    task: Task | str,
    data: str | Path,
    model,
    *,
    lam_init: float | Sequence[float] | None = None,
    lambda_lr: float | None = None,
    rate_penalty: float = 0.0,
    lr: float | None = None,
    seed: int = 0,
    n_seeds: int = 1,
    layer: str | int = "last",
    max_epochs: int = 40,
    patience: int = 6,
    features_dir: str | Path | None = None,
    on_epoch: Callable[[int, float, dict[str, float]], None] | None = None,
) -> list[ResultRow]:
    """Train probes with a learned lambda over ``model`` (a loaded :class:`~ofactl.inference.OFAModel`); returns
    the results rows (test metrics and the dev primary metric).

    ``lam_init`` may be several initial lambdas (the paper's Fig. 3 starts from
    several rates): the 20 ms part of the model runs once, then one run per
    (initial lambda, seed), seeds ``seed .. seed + n_seeds - 1``.  Each run's
    ``variant`` is ``learned-init<X>``.  The pre-CIF features are cached under ``features_dir`` (default:
    ``features/`` in the current folder) as ``<model-sha12>/<task>/<data key>/<split>-precif.h5`` and streamed
    from there.
    """
    from ofactl.inference import require_model
    from ofactl.probe import default_features_dir, features_path, labelled

    task = check_learnable(task)
    if layer == "weighted":
        raise OfactlError("--learn-lambda needs one layer, not --layer weighted",
                          hint="choose a layer (--layer last, or a number)")
    m = require_model(model, "run_adaptive")
    if rate_penalty < 0:
        raise OfactlError(f"--rate-penalty must be >= 0, found {rate_penalty:g}")
    if n_seeds < 1:
        raise OfactlError(f"--seeds must be at least 1, found {n_seeds}")
    lam_max = _lam_max(m)
    inits = [lam_max / 2] if lam_init is None else (
        [float(lam_init)] if isinstance(lam_init, (int, float)) else [float(x) for x in lam_init])
    for x in inits:  # before the (slow) caching
        _check_init(x, lam_max)
    lambda_lr = task.lambda_lr if lambda_lr is None else float(lambda_lr)
    lr = task.lr if lr is None else float(lr)
    m.student.eval()
    for p in m.student.parameters():
        p.requires_grad_(False)

    roles = dict(zip(("train", "dev", "test"), task.splits))
    labels = {role: labelled(task, data, split)[0] for role, split in roles.items()}
    vocab = task.vocabulary(list(labels["train"].values()))
    features_dir = Path(features_dir) if features_dir is not None else default_features_dir(None)
    from ofactl.stream import close_handles

    close_handles()  # an open handle would make HDF5 see a cache file as it was, not as it is on disk
    examples: dict[str, list[Example]] = {}
    for role, split in roles.items():
        path = _cache_split(m, data, task, split,
                            features_path(features_dir, m.model_sha256, task.name, split, "precif", data=data, precision=m.precision))
        examples[role] = _stored_split(path, labels[role], task, vocab)
        if not examples[role]:
            raise OfactlError(f"{data}: split {split!r} has no readable utterances labelled for task {task.name}")

    from ofactl.stream import close_handles

    rows: list[ResultRow] = []
    try:
        for init in inits:
            for s in range(seed, seed + n_seeds):
                rows += _learn_one(task, m, examples, vocab, roles, lam_max=lam_max, lam_init=init,
                                   lambda_lr=lambda_lr, rate_penalty=rate_penalty, lr=lr, seed=s, layer=layer,
                                   max_epochs=max_epochs, patience=patience, on_epoch=on_epoch)
    finally:
        close_handles()
    return rows


def _learn_one(task: Task, m, examples: dict[str, list[Example]], vocab, roles: dict[str, str], *, lam_max: float,
               lam_init: float, lambda_lr: float, rate_penalty: float, lr: float, seed: int, layer,
               max_epochs: int, patience: int, on_epoch) -> list[ResultRow]:
    """One learned-lambda run on cached 20 ms features: its rows."""
    torch.manual_seed(seed)
    upstream = AdaptiveUpstream(m.student, lam_max, lam_init, layer, m.precision)
    # a fixed standardisation, measured once at the initial lambda (see tasks.loop.Standardize)
    with torch.no_grad():
        upstream.norm, in_dim = _standardize(upstream, examples["train"])

    sgd = torch.optim.SGD([upstream.theta], lr=lambda_lr, momentum=0.9)

    def epoch_done(epoch: int, scores: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, float(upstream.lam.detach()), scores)

    extra_loss = (lambda: rate_penalty * upstream.last_rate) if rate_penalty > 0 else None
    result = fit(task, examples["train"], examples["dev"], vocab, in_dim, lr=lr, seed=seed, max_epochs=max_epochs,
                 patience=patience, upstream=upstream, extra_optimizer=sgd, extra_loss=extra_loss,
                 extra_state=lambda: upstream.theta.detach().clone(), on_epoch=epoch_done, device=upstream.device)
    with torch.no_grad():
        upstream.theta.copy_(result.extra_state)
    learned = float(upstream.lam.detach())
    outcomes, _ = score_examples(task, result.head, examples["test"], vocab, upstream, device=upstream.device)
    measured = _measured_period_ms(upstream, examples["test"])
    note = (f"learned lambda (init {lam_init:.4g}, lambda_max {lam_max:.4g}, SGD lr {lambda_lr:g}, "
            f"rate penalty {rate_penalty:g}, best epoch {result.best_epoch} of {result.epochs})")
    from ofactl.probe import test_rows
    from ofactl.macs import inference_macs_per_second
    from ofactl.results import learned_variant

    common = dict(model=m.model_dir.name, model_sha256=m.model_sha256, task=task.name, lam=learned,
                  target_period_ms=None, measured_period_ms=measured, status="ok", note=note, seed=seed, lr=lr,
                  layer=str(layer), macs_per_second=inference_macs_per_second(m.student, measured), precision=m.precision,
                  variant=learned_variant(lam_init, rate_penalty))
    outcomes.meta.update(model=common["model"], model_sha256=m.model_sha256, split=roles["test"], seed=seed,
                         lam=learned, lam_init=lam_init, layer=str(layer), variant=common["variant"])
    rows = test_rows(task, outcomes.metrics(), outcomes, common, len(examples["test"]))
    rows.append(ResultRow(metric=task.primary.name, value=result.dev[task.primary.name],
                          higher_is_better=task.primary.higher_is_better, split="dev",
                          n_utterances=len(examples["dev"]), **common))
    return rows


__all__ = ["AdaptiveUpstream", "check_learnable", "run_adaptive"]
