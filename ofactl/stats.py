"""How sure a measurement is: bootstrap intervals and paired comparisons over test utterances.

Every test metric ofactl reports is a function of per-utterance sufficient
statistics summed over the test set (:mod:`ofactl.outcomes`): accuracy is
``sum correct / sum n``, PER is ``sum errors / sum reference phones``, slot
F1 is ``sum f1 / n``, MTWV is the best threshold of the summed per-query TWV
curves.  Resampling the test utterances with replacement is therefore a
matrix product: a ``(replicates, utterances)`` matrix of draw counts times
each ``(utterances, ...)`` statistic gives every replicate's totals at once,
and the task's own ``finish`` turns totals into metrics.  Corpus-level ratios
(PER, WER, CER, slot value CER) are recomputed from the resampled totals, as
they should be, never averaged per utterance.

* :func:`interval`: the 95% percentile bootstrap interval of a metric
  (1000 resamples, fixed seed).  Given several runs of one point (probe
  training seeds) it is the interval of their mean: each replicate resamples
  the test utterances (the same draw for every seed, since they share the test
  set) and the seeds (with replacement), so that both the test-set sample and
  the training randomness are in it.
* :func:`paired_difference`: metric(A) - metric(B) on the utterances both
  scored, with one resample of those utterances applied to both sides (the
  paired bootstrap); its interval and a verdict: "A better", "B better" or
  "no difference at 95%", and, given an equivalence ``margin``, whether the
  whole interval lies within it.

The interval treats test utterances as independent draws.  Utterances of the
same speaker are not: on a test set of few speakers the interval is too
narrow for claims about new speakers (it answers "how sure on speakers like
these").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ofactl.errors import OfactlError

if TYPE_CHECKING:
    from ofactl.outcomes import Outcomes

#: Defaults of every interval ofactl prints or stores.
LEVEL = 0.95
N_RESAMPLES = 1000
SEED = 0
#: Replicates per block (bounds the memory of the count matrix at ``block x utterances``).
_BLOCK = 100


def resample_counts(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(n_resamples, n)`` draw counts of ``n`` items resampled with replacement (each row sums to ``n``).

    Deterministic for ``(n, n_resamples, seed)``, so two runs scored on the
    same utterances are resampled identically.
    """
    if n <= 0:
        return np.zeros((n_resamples, 0), dtype=np.int32)
    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    out = np.empty((n_resamples, n), dtype=np.int32)
    for start in range(0, n_resamples, _BLOCK):
        b = min(_BLOCK, n_resamples - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        out[start:start + b] = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
    return out


def _task(name: str):
    from ofactl.tasks import get_task

    return get_task(name)


def metric_values(outcomes: "Outcomes", metric: str, weights: np.ndarray | None = None) -> np.ndarray:
    """The metric under each row of ``weights`` (``(replicates, utterances)``; None: the test set itself, shape ``(1,)``).

    Totals are ``weights @ statistic`` for every per-utterance statistic, then the task's ``finish``.
    """
    task = _task(outcomes.task)
    if metric not in {m.name for m in task.metrics}:
        raise OfactlError(f"task {task.name} has no metric {metric!r}",
                          hint=f"its metrics: {', '.join(m.name for m in task.metrics)}")
    if weights is None:
        weights = np.ones((1, len(outcomes)), dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    values = np.empty(weights.shape[0], dtype=np.float64)
    for start in range(0, weights.shape[0], _BLOCK):
        w = weights[start:start + _BLOCK]
        totals = {name: np.tensordot(w, stat, axes=(1, 0)) for name, stat in outcomes.stats.items()}
        with np.errstate(divide="ignore", invalid="ignore"):
            values[start:start + len(w)] = np.asarray(task.finish(totals)[metric], dtype=np.float64)
    return values


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size < max(2, 0.5 * values.size):  # most replicates undefined: no interval
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _aligned(runs: Sequence["Outcomes"], ids: Sequence[str] | None = None) -> tuple[list["Outcomes"], list[str]]:
    """The runs restricted to the utterances every one of them scored (sorted ids)."""
    if not runs:
        raise OfactlError("no runs to compute an interval from")
    tasks = {r.task for r in runs}
    if len(tasks) > 1:
        raise OfactlError(f"runs of different tasks ({', '.join(sorted(tasks))}) cannot be pooled")
    common = set(runs[0].ids) if ids is None else set(ids)
    for r in runs:
        common &= set(r.ids)
    order = sorted(common)
    return [r.select(order) for r in runs], order


def _seed_replicates(per_seed: np.ndarray, seed: int) -> np.ndarray:
    """``per_seed (S, B)`` metric values -> ``(B,)`` means over seeds resampled with replacement (S > 1)."""
    s, b = per_seed.shape
    if s == 1:
        return per_seed[0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, s, 1]))
    picks = rng.integers(0, s, size=(b, s))
    return per_seed[picks, np.arange(b)[:, None]].mean(axis=1)


@dataclass(frozen=True)
class Interval:
    """A metric with its bootstrap interval.

    Attributes:
        value: the metric on the test set (the mean over seeds for several runs).
        low, high: the ``level`` percentile interval (NaN when undefined).
        n: test utterances (queries for qbe) behind it.
        n_seeds: runs (probe-training seeds) pooled.
        level, n_resamples: the interval's settings.
    """

    metric: str
    value: float
    low: float
    high: float
    n: int
    n_seeds: int = 1
    level: float = LEVEL
    n_resamples: int = N_RESAMPLES

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def text(self, scale: float = 1.0, digits: int = 3) -> str:
        """``"0.812 [0.779, 0.843]"`` (values times ``scale``)."""
        if math.isnan(self.low):
            return f"{self.value * scale:.{digits}g} [?]"
        return f"{self.value * scale:.{digits}g} [{self.low * scale:.{digits}g}, {self.high * scale:.{digits}g}]"


def interval(runs: "Outcomes | Sequence[Outcomes]", metric: str, *, level: float = LEVEL,
             n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Interval:
    """The ``level`` percentile bootstrap interval of ``metric`` over the test utterances of one or more runs.

    Several runs (seeds of one point) give the interval of their mean; see the module docstring.
    """
    from ofactl.outcomes import Outcomes

    runs = [runs] if isinstance(runs, Outcomes) else list(runs)
    runs, ids = _aligned(runs)
    if not ids:
        raise OfactlError("the runs share no test utterance", hint="were they scored on the same test set?")
    weights = resample_counts(len(ids), n_resamples, seed)
    point = float(np.mean([metric_values(r, metric)[0] for r in runs]))
    per_seed = np.stack([metric_values(r, metric, weights) for r in runs])
    low, high = _percentiles(_seed_replicates(per_seed, seed), level)
    return Interval(metric, point, low, high, len(ids), len(runs), level, n_resamples)


@dataclass(frozen=True)
class Difference:
    """metric(A) - metric(B) on shared utterances, with its paired bootstrap interval and a verdict.

    ``better`` is ``"a"``, ``"b"`` or ``""`` (the interval holds 0);
    ``equivalent`` is True when a ``margin`` was given and the whole interval
    lies within ``[-margin, margin]`` (None without a margin).
    """

    metric: str
    higher_is_better: bool
    a: float
    b: float
    diff: float
    low: float
    high: float
    n: int
    n_seeds_a: int
    n_seeds_b: int
    level: float
    n_resamples: int
    margin: float | None = None

    @property
    def better(self) -> str:
        if math.isnan(self.low) or math.isnan(self.high):
            return ""
        if self.low > 0 or self.high < 0:
            a_higher = self.low > 0
            return "a" if a_higher == self.higher_is_better else "b"
        return ""

    @property
    def equivalent(self) -> bool | None:
        if self.margin is None or math.isnan(self.low):
            return None
        return -self.margin <= self.low and self.high <= self.margin

    def verdict(self, a_name: str = "A", b_name: str = "B") -> str:
        pct = f"{round(self.level * 100):d}%"
        if math.isnan(self.low):
            return "undefined (too few resamples gave a value)"
        line = {"a": f"{a_name} better", "b": f"{b_name} better"}.get(self.better, f"no difference at {pct}")
        if self.margin is not None:
            line += (f"; equivalent within ±{self.margin:g}" if self.equivalent
                     else f"; not shown equivalent within ±{self.margin:g}")
        return line


def _paired_replicates(a, b, metric: str, n_resamples: int, seed: int):
    """``(a value, b value, a replicates, b replicates, shared ids)`` of one paired resampling."""
    from ofactl.outcomes import Outcomes

    a_runs = [a] if isinstance(a, Outcomes) else list(a)
    b_runs = [b] if isinstance(b, Outcomes) else list(b)
    if not a_runs or not b_runs:
        raise OfactlError("both sides of a comparison need at least one run")
    tasks = {r.task for r in (*a_runs, *b_runs)}
    if len(tasks) > 1:
        raise OfactlError(f"cannot compare runs of different tasks ({', '.join(sorted(tasks))})")
    common = set(a_runs[0].ids)
    for r in (*a_runs, *b_runs):
        common &= set(r.ids)
    if not common:
        raise OfactlError("the two runs share no test utterance, so they cannot be compared pairwise",
                          hint="compare runs scored on the same test set")
    a_runs, ids = _aligned(a_runs, common)
    b_runs, _ = _aligned(b_runs, common)
    weights = resample_counts(len(ids), n_resamples, seed)
    va = float(np.mean([metric_values(r, metric)[0] for r in a_runs]))  # also checks the metric exists
    vb = float(np.mean([metric_values(r, metric)[0] for r in b_runs]))
    ra = _seed_replicates(np.stack([metric_values(r, metric, weights) for r in a_runs]), seed)
    rb = _seed_replicates(np.stack([metric_values(r, metric, weights) for r in b_runs]), seed + 1)
    return va, vb, ra, rb, ids, (len(a_runs), len(b_runs))


def paired_difference(a: "Outcomes | Sequence[Outcomes]", b: "Outcomes | Sequence[Outcomes]", metric: str, *,
                      margin: float | None = None, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> Difference:
    """Paired bootstrap of ``metric(a) - metric(b)`` on the utterances every run of both sides scored.

    Each side may be several runs (seeds): its value is their mean, and each
    replicate resamples the shared utterances once (for both sides) and each
    side's seeds with replacement.

    Raises:
        OfactlError: different tasks, or no shared utterance.
    """
    va, vb, ra, rb, ids, (sa, sb) = _paired_replicates(a, b, metric, n_resamples, seed)
    task = a.task if hasattr(a, "task") else list(a)[0].task
    hib = {m.name: m.higher_is_better for m in _task(task).metrics}[metric]
    low, high = _percentiles(ra - rb, level)
    return Difference(metric, hib, va, vb, va - vb, low, high, len(ids), sa, sb, level, n_resamples, margin)


def paired_ratio(a: "Outcomes | Sequence[Outcomes]", b: "Outcomes | Sequence[Outcomes]", metric: str, *,
                 level: float = LEVEL, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Interval:
    """``metric(a) / metric(b)`` with its paired bootstrap interval (e.g. the accuracy kept at a long period
    relative to 20 ms), on the utterances both scored."""
    va, vb, ra, rb, ids, (sa, sb) = _paired_replicates(a, b, metric, n_resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = _percentiles(ra / rb, level)
    value = va / vb if vb else math.nan
    return Interval(f"{metric} ratio", value, low, high, len(ids), max(sa, sb), level, n_resamples)


__all__ = ["Difference", "Interval", "LEVEL", "N_RESAMPLES", "SEED", "interval", "metric_values",
           "paired_difference", "paired_ratio", "resample_counts"]
