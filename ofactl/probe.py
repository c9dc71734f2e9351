"""Train a downstream probe on frozen features at one frame period and measure it on test.

    >>> rows = run_probe("sid", "/data/VoxCeleb1", period="90ms")   # list of ResultRow
    >>> append_rows("results.csv", rows)

Features come from :func:`ofactl.extract.extract_features`, once per (model,
task, dataset split, period or lambda, layer), cached as
``<features_dir>/<model-sha12>/<task>/<data key>/<split>-<period>[-layer<L>].h5``
(``features_dir`` defaults to ``features/`` next to the results file; the data
key names the dataset's path and file list, :func:`data_key`) and reused:
extraction resumes an interrupted file and returns at once for a complete one
with the same settings; anything else at that path is re-extracted, never read.
Probes stream the cached features (:mod:`ofactl.stream`).

:func:`prepare` loads the three splits (labels from the corpus, features
from the cache); :func:`train_and_test` trains one head (Adam, early
stopping on dev) and measures the dev-best head on test; :func:`rows_for`
turns that into results-table rows.  The sweep reuses one ``prepare`` for a
whole learning-rate grid.  A task without training (``Task.trainable``
False: qbe, whose ``train`` role is the document collection) is scored by
:func:`score_untrained` instead, once per period.

Baseline ``pooling="avg"``: instead of the CIF at the period's lambda, the
model's 20 ms features (lambda 0, where the CIF is the identity) are
average-pooled to the same period (each utterance of N frames gets
``max(1, round(N * 20ms / period))`` frames, each the mean of a contiguous,
near-equal run).  Its rows name the model ``<model>+avgpool``, with no lambda.
It costs the full 20 ms model, and for a mean-pooling probe it is almost the
20 ms features themselves (pooling commutes with the probe's linear
projection): a storage baseline, not a cheaper model.

Baseline ``pooling="uniform"``: fixed-length subsampling *inside* the model,
what Meng et al. compare CIF with: the model's CNN frames are averaged in
equal runs (the CIF with every weight ``20 ms / period``) before the
transformer, which then sees as many frames as the CIF gives at that period.
Same model, same compute, only the segmentation differs.  Rows name the model
``<model>+uniform`` (variant ``uniform``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofactl.errors import OfactlError
from ofactl.period import FRAME_MS, FramePeriod
from ofactl.progress import Progress
from ofactl.results import ResultRow
from ofactl.stream import Stored, average_pool, close_handles, pooled_length, stored_lengths
from ofactl.tasks import Task, get_task
from ofactl.tasks.base import Example
from ofactl.tasks.loop import Standardize, fit, score_examples


#: more than this fraction of a split's utterances infeasible (CTC) makes the whole run ``infeasible``
INFEASIBLE_FRACTION = 0.5
POOLINGS = ("cif", "avg", "uniform")


def period_tag(period: FramePeriod | None, lam: float | None) -> str:
    if period is not None:
        ms = period.ms
        return f"{ms:g}ms"
    return f"lam{lam:.6g}"


def uniform_tag(period: FramePeriod) -> str:
    """The cache tag of fixed-length pooling inside the model at ``period``."""
    return f"uniform{period.ms:g}ms"


def features_path(features_dir: str | Path, model_sha256: str, task: str, split: str, tag: str,
                  layer: str | int = "last", data: str | Path | None = None, precision: str = "fp32") -> Path:
    """The feature cache's file:
    ``<features_dir>/<model-sha12>/<task>/<data key>/<split>-<tag>[-layer<L>][-bf16].h5``.

    The data key (:func:`data_key`) names the dataset split the features were extracted from, so the same model
    and task swept over two corpora (or two versions of one) never share a file; bf16 features have their own."""
    layer_part = ("" if str(layer) == "last" else f"-layer{layer}") + ("" if precision == "fp32" else f"-{precision}")
    folder = Path(features_dir) / model_sha256[:12] / task
    if data is not None:
        folder = folder / data_key(str(data), get_task(task).layout_of(data), split)
    return folder / f"{split}-{tag}{layer_part}.h5"


@functools.lru_cache(maxsize=256)
def data_key(data: str, layout: str, split: str) -> str:
    """12 hex digits for one split of a dataset: its resolved path and its file list (ids, files, segments)."""
    from ofactl.data.corpora import read_corpus

    corpus = read_corpus(data, layout, split=split)
    digest = hashlib.sha256(str(Path(data).resolve()).encode("utf-8"))
    for u in sorted(corpus.utterances, key=lambda u: u.id):
        digest.update(f"{u.id}\t{u.path}\t{u.offset_s}\t{u.duration_s}\n".encode("utf-8"))
    return digest.hexdigest()[:12]


def default_features_dir(results: str | Path | None) -> Path:
    return (Path(results).absolute().parent if results is not None else Path.cwd()) / "features"


def labelled(task: Task, data: str | Path, split: str) -> tuple[dict[str, Any], int]:
    """``{utterance id: label}`` of one split, and how many utterances had no label for the task."""
    from ofactl.data.corpora import read_corpus

    corpus = read_corpus(data, task.layout_of(data), split=split)
    labels, missing = {}, 0
    for u in corpus.utterances:
        lab = task.label(u)
        if lab is None:
            missing += 1
        else:
            labels[u.id] = lab
    return labels, missing


@dataclass
class Prepared:
    """Everything a probe run at one period needs, loaded once."""

    task: Task
    model: Any                       # OFAModel
    vocab: Any
    in_dim: int
    examples: dict[str, list[Example]]   # "train", "dev", "test"
    lam: float
    target_period_ms: float | None
    measured_period_ms: float | None
    layer: str
    upstream: Standardize | None = None   # train-set feature standardisation
    pooling: str = "cif"
    n_layers: int = 0                     # layer "weighted": the layers summed (inputs are frames x layers*dim)
    infeasible: dict[str, tuple[int, int]] = field(default_factory=dict)   # role -> (infeasible, total)

    @property
    def status(self) -> str:
        for bad, total in self.infeasible.values():
            if total and bad / total > INFEASIBLE_FRACTION:
                return "infeasible"
        return "ok"

    def infeasible_note(self) -> str:
        parts = [f"{role}: {bad} of {total}" for role, (bad, total) in self.infeasible.items() if bad]
        if not parts:
            return ""
        period = f"{self.measured_period_ms:.1f}ms" if self.measured_period_ms else f"lambda {self.lam:.4g}"
        return f"utterances with fewer frames than labels at {period} ({'; '.join(parts)})"


def extraction_layer(layer: str | int) -> str | int:
    """The layer to extract for a probe layer: every layer (``"all"``) for SUPERB's weighted sum."""
    from ofactl.tasks.weighted import WEIGHTED

    return "all" if layer == WEIGHTED else layer


def resolve_period(model, period: FramePeriod | str | None, lam: float | None) -> tuple[FramePeriod | None, float]:
    """The (period, lambda) of a probe point: checked by :class:`ofactl.period.OperatingPoint`, lambda from the
    model's calibration when a period is given."""
    from ofactl.period import OperatingPoint

    point = OperatingPoint.of(period, lam)
    return point.period, point.resolve(model)


def prepare(
    task: Task | str,
    data: str | Path,
    model,
    *,
    period: FramePeriod | str | None = None,
    lam: float | None = None,
    layer: str | int = "last",
    features_dir: str | Path | None = None,
    progress: Progress | None = None,
    pooling: str = "cif",
) -> Prepared:
    """Extract (or reuse) ``model``'s features of the task's train/dev/test splits and load them with their labels.

    ``pooling="avg"`` is the average-pooling baseline and ``pooling="uniform"`` fixed-length pooling inside
    the model (both need ``period``; see the module docstring).
    """
    from ofactl.extract import extract_features
    from ofactl.features import read_attrs
    from ofactl.inference import require_model

    task = get_task(task) if isinstance(task, str) else task
    task.check_requirements()
    m = require_model(model, "prepare")
    if pooling not in POOLINGS:
        raise OfactlError(f"unknown pooling {pooling!r}", hint=f"one of: {', '.join(POOLINGS)}")
    if pooling in ("avg", "uniform"):
        if period is None:
            raise OfactlError(f"--pooling {pooling} needs --period")
        from ofactl.period import OperatingPoint

        p = OperatingPoint.of(period).period  # parsed and checked (20 ms at least)
        if pooling == "avg":
            lam_value = 0.0  # 20 ms features: the CIF is the identity at lambda 0
            tag = period_tag(None, 0.0)
        else:
            lam_value = 1.0  # the CIF with equal weights (see OFAModel.encode_back)
            tag = uniform_tag(p)
    else:
        p, lam_value = resolve_period(m, period, lam)
        tag = period_tag(p, lam_value)
    features_dir = Path(features_dir) if features_dir is not None else default_features_dir(None)
    close_handles()  # an open handle would make HDF5 see a cache file as it was, not as it is on disk
    roles = dict(zip(("train", "dev", "test"), task.splits))
    labels: dict[str, dict[str, Any]] = {}
    paths: dict[str, Path] = {}
    for role, split in roles.items():  # every split's labels before any (slow) extraction
        labels[role], _ = labelled(task, data, split)
        if not labels[role]:
            raise task.no_labels(data, split)
    stored_layer = extraction_layer(layer)
    for role, split in roles.items():
        out = features_path(features_dir, m.model_sha256, task.name, split, tag, stored_layer, data, m.precision)
        if progress:
            progress(list(roles).index(role), len(roles), f"features {split}")
        out.parent.mkdir(parents=True, exist_ok=True)
        # a cache: a complete file with these settings is reused, anything else there is replaced
        if pooling == "uniform":
            extract_features(data, out, model=m, period=p, layer=stored_layer, layout=task.layout_of(data),
                             split=split, num_workers=0, pooling="uniform", cache=True)
        else:
            extract_features(data, out, model=m, lam=lam_value, layer=stored_layer, layout=task.layout_of(data),
                             split=split, num_workers=0, cache=True)
        paths[role] = out
    train_labels = list(labels["train"].values())
    vocab = task.vocabulary(train_labels)
    examples: dict[str, list[Example]] = {}
    attrs = read_attrs(paths["train"])
    in_dim = int(attrs.get("feature_dim") or 0)
    n_layers = len(attrs.get("layers") or []) if stored_layer == "all" else 0
    frames_20ms = frames_out = 0
    pool_ms = p.ms if pooling == "avg" else None
    for role, path in paths.items():  # references and lengths only: features are read while training
        items = []
        for utt_id, (n, _duration) in sorted(stored_lengths(path).items()):
            if utt_id not in labels[role]:
                continue
            m_frames = pooled_length(n, pool_ms) if pool_ms else n
            if role == "test":
                frames_20ms, frames_out = frames_20ms + n, frames_out + m_frames
            items.append(Example(utt_id, Stored(str(path), utt_id, pool_ms, layers=n_layers > 0), m_frames,
                                 task.encode(labels[role][utt_id], vocab)))
        if not items:
            raise OfactlError(f"{path}: no features for the labelled utterances of split {roles[role]!r}")
        examples[role] = items
    upstream = Standardize.fit(e.inputs for e in examples["train"])  # one streaming pass
    measured = read_attrs(paths["test"]).get("measured_period_ms")
    if pooling == "avg" and measured is not None:
        measured = float(measured) * frames_20ms / max(frames_out, 1)  # same audio, fewer frames
    prepared = Prepared(task, m, vocab, in_dim, examples, lam_value, p.ms if p is not None else None,
                        float(measured) if measured is not None else None, str(layer), upstream, pooling, n_layers)
    if task.ctc:
        prepared.infeasible = {role: (sum(task.infeasible(e) for e in ex), len(ex)) for role, ex in examples.items()}
    return prepared


@dataclass
class ProbeResult:
    """What one trained (or untrained) probe measured."""

    lr: float | None          # None: a task without training
    seed: int
    dev: dict[str, float]
    test: dict[str, float]
    epochs: int
    best_epoch: int
    test_outcomes: Any = None  # ofactl.outcomes.Outcomes of the test split (per utterance)
    layer_weights: list[float] | None = None  # layer "weighted": the dev-best softmax weights


def train_and_test(prep: Prepared, *, lr: float, seed: int = 0, max_epochs: int = 40, patience: int = 6,
                   batch_size: int | None = None, on_epoch=None) -> ProbeResult:
    """Train a head with Adam at ``lr`` (early stopping on dev) and measure the dev-best head on test.

    The head trains on the model's device (a GPU when the features were extracted on one)."""
    task = prep.task
    train = [e for e in prep.examples["train"] if not task.infeasible(e)]
    import torch

    device = prep.model.device  # the head trains where the model runs (as --learn-lambda's)
    upstream, extra = prep.upstream, {}
    if prep.n_layers:  # SUPERB's weighted sum: one weight per layer, learned with the head
        from ofactl.tasks.weighted import WeightedLayers

        upstream = WeightedLayers(prep.upstream, prep.n_layers, prep.in_dim)
        extra = dict(extra_optimizer=torch.optim.Adam(upstream.parameters(), lr=lr),
                     extra_state=lambda: upstream.weights.detach().clone())
    result = fit(task, train, prep.examples["dev"], prep.vocab, prep.in_dim, lr=lr, seed=seed,
                 max_epochs=max_epochs, patience=patience, batch_size=batch_size, on_epoch=on_epoch,
                 upstream=upstream, device=device, **extra)
    weights = None
    if prep.n_layers:
        with torch.no_grad():
            upstream.weights.copy_(result.extra_state)  # the dev-best weights, with the dev-best head
        weights = upstream.layer_weights()
    outcomes, _ = score_examples(task, result.head, prep.examples["test"], prep.vocab, upstream, device=device)
    return ProbeResult(lr, seed, result.dev, outcomes.metrics(), result.epochs, result.best_epoch, outcomes,
                       weights)


def score_untrained(prep: Prepared, *, seed: int = 0) -> ProbeResult:
    """A task without training (``task.trainable`` False, qbe): its dev and test metrics, no learning rate."""
    dev, test, outcomes = prep.task.score_splits(prep.examples, prep.upstream)
    return ProbeResult(None, seed, dev, test, 0, 0, outcomes)


def model_label(model, pooling: str = "cif") -> str:
    """The results table's ``model``: the directory name, ``+avgpool`` / ``+uniform`` for the baselines."""
    return model.model_dir.name + {"avg": "+avgpool", "uniform": "+uniform"}.get(pooling, "")


def test_rows(task: Task, test: dict[str, float], outcomes, common: dict[str, Any], n_utterances: int,
              status: str = "ok") -> list[ResultRow]:
    """One ``test`` row per metric of ``task``; ``ok`` rows with per-utterance ``outcomes`` carry their
    95% bootstrap interval (:func:`ofactl.stats.interval`) and the outcomes themselves."""
    from ofactl.stats import interval

    rows = []
    for metric in task.metrics:
        value = test[metric.name] if status == "ok" else math.nan
        low = high = None
        if status == "ok" and outcomes is not None and len(outcomes):
            ci = interval(outcomes, metric.name)
            low, high = ci.low, ci.high
        rows.append(ResultRow(metric=metric.name, value=value, higher_is_better=metric.higher_is_better,
                              split="test", n_utterances=n_utterances, ci_low=low, ci_high=high,
                              per_utterance=outcomes if status == "ok" else None, **common))
    return rows


def rows_for(prep: Prepared, outcome: ProbeResult | None, *, seed: int, lr: float | None = None,
             status: str | None = None, note: str = "", macs_per_second: float | None = None) -> list[ResultRow]:
    """Results rows: every test metric (with its interval and outcomes), plus the dev value of the primary metric."""
    from ofactl.results import AVGPOOL, UNIFORM

    task = prep.task
    status = status or ("ok" if outcome is not None else "failed")
    from ofactl.tasks.weighted import weights_note

    weights = weights_note(outcome.layer_weights) if outcome is not None and outcome.layer_weights else ""
    notes = [n for n in (note, weights, prep.infeasible_note()) if n]
    if macs_per_second is None and prep.measured_period_ms:
        from ofactl.macs import inference_macs_per_second

        # average pooling runs the whole 20 ms model and pools afterwards
        period_ms = FRAME_MS if prep.pooling == "avg" else prep.measured_period_ms
        macs_per_second = inference_macs_per_second(prep.model.student, period_ms)
    common = dict(model=model_label(prep.model, prep.pooling), model_sha256=prep.model.model_sha256, task=task.name,
                  lam=prep.lam if prep.pooling == "cif" else None, target_period_ms=prep.target_period_ms,
                  measured_period_ms=prep.measured_period_ms, status=status, note="; ".join(notes), seed=seed,
                  lr=lr if lr is not None else (outcome.lr if outcome else None), layer=prep.layer,
                  macs_per_second=macs_per_second, precision=prep.model.precision,
                  variant={"avg": AVGPOOL, "uniform": UNIFORM}.get(prep.pooling, ""))
    ok = outcome is not None and status == "ok"
    outcomes = None
    if ok and outcome.test_outcomes is not None:
        outcomes = outcome.test_outcomes
        outcomes.meta.update(model=common["model"], model_sha256=prep.model.model_sha256, split=task.splits[2],
                             seed=seed, lam=common["lam"], target_period_ms=prep.target_period_ms,
                             layer=prep.layer, variant=common["variant"])
    rows = test_rows(task, outcome.test if ok else {}, outcomes, common, len(prep.examples["test"]),
                     "ok" if ok else status)
    primary = task.primary
    value = outcome.dev[primary.name] if ok else math.nan
    rows.append(ResultRow(metric=primary.name, value=value, higher_is_better=primary.higher_is_better, split="dev",
                          n_utterances=len(prep.examples["dev"]), **common))
    return rows


def run_probe(
    task: Task | str,
    data: str | Path,
    model,
    *,
    period: FramePeriod | str | None = None,
    lam: float | None = None,
    lr: float | None = None,
    seed: int = 0,
    n_seeds: int = 1,
    layer: str | int = "last",
    features_dir: str | Path | None = None,
    max_epochs: int = 40,
    patience: int = 6,
    progress: Progress | None = None,
    pooling: str = "cif",
) -> list[ResultRow]:
    """One probe point of ``model`` (a loaded :class:`~ofactl.inference.OFAModel`): prepare, then train and test
    ``n_seeds`` heads (seeds ``seed``, ``seed + 1``, ...).

    Returns the rows to append, per seed (``status=infeasible`` rows when CTC
    cannot fit).  A task without training (qbe) is scored once; ``lr``,
    ``max_epochs``, ``patience`` and ``n_seeds`` do not apply.
    """
    from ofactl.inference import require_model

    task = get_task(task) if isinstance(task, str) else task
    if n_seeds < 1:
        raise OfactlError(f"--seeds must be at least 1, found {n_seeds}")
    model = require_model(model, "run_probe")
    stages = 3 + (n_seeds if task.trainable else 1)  # the three splits' features, then each training (or scoring)
    prep = prepare(task, data, model, period=period, lam=lam, layer=layer, features_dir=features_dir,
                   progress=(lambda done, _total, desc: progress(done, stages, desc)) if progress else None,
                   pooling=pooling)
    if not task.trainable:
        if progress:
            progress(3, stages, "scoring")
        try:
            return rows_for(prep, score_untrained(prep, seed=seed), seed=seed)
        finally:
            close_handles()
    lr = task.lr if lr is None else lr
    seeds = range(seed, seed + n_seeds)
    if prep.status == "infeasible":
        return [r for s in seeds for r in rows_for(prep, None, seed=s, lr=lr, status="infeasible")]
    rows = []
    try:
        for k, s in enumerate(seeds):
            if progress:
                progress(3 + k, stages, "training" if n_seeds == 1 else f"training seed {s}")
            outcome = train_and_test(prep, lr=lr, seed=s, max_epochs=max_epochs, patience=patience)
            rows += rows_for(prep, outcome, seed=s)
    finally:
        close_handles()
    return rows


__all__ = ["INFEASIBLE_FRACTION", "POOLINGS", "Prepared", "ProbeResult", "average_pool", "features_path",
           "model_label", "prepare", "rows_for", "run_probe", "score_untrained", "test_rows", "train_and_test"]
