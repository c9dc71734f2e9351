"""What a benchmark reports: one measured quantity, with its goal if it has one.

Each ``bench_*.py`` exposes ``measure(quick=False, **options) -> list[Result]``
(and prints its own detailed table from ``main()``); ``run_all.py`` gathers the
results of all of them into one table.  Benchmarks are reports: a missed goal is
marked, never raised.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Result:
    """One row of the benchmark table.

    ``key`` is a stable identifier (``"extract.ratio_90_cnn"``) for scripts and
    tests; ``quantity`` is the human-readable label.  ``unit`` is ``"x"`` for a
    ratio measured side by side in one run (the numbers that matter on a noisy
    machine), otherwise ``"ms"``, ``"audio-s/s"``, ``"MB"``, ``"MB/hour"``,
    ``"%"`` or ``""``.  ``goal`` is a short text such as ``"<= 1.10x"``;
    ``met`` is None when there is no goal.  ``low``/``high`` bound a 95%
    interval of ``value`` where the benchmark measures one (a bootstrap over
    its rounds, see :func:`timing_ratio`) and ``n`` is the number of
    rounds (or runs) behind it; a goal is judged on ``value``, the interval
    says how far to trust that.
    """

    benchmark: str
    quantity: str
    value: float
    unit: str
    goal: str | None = None
    met: bool | None = None
    key: str = ""
    low: float | None = None
    high: float | None = None
    n: int | None = None

    def with_interval(self, estimate: "RatioEstimate") -> "Result":
        """This result with ``estimate``'s interval and n (its value must be ``estimate.value``)."""
        return dataclasses.replace(self, low=estimate.low, high=estimate.high, n=estimate.n)


@dataclass(frozen=True)
class RatioEstimate:
    """``value = statistic(numerator) / statistic(denominator)`` with a 95% bootstrap interval over ``n`` rounds."""

    value: float
    low: float
    high: float
    n: int


def timing_ratio(numerator: Sequence[float], denominator: Sequence[float], *, paired: bool,
                 statistic: str = "median", level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> RatioEstimate:
    """The ratio of two timings' medians (or means), with a percentile bootstrap interval.

    ``paired``: the i-th timings of both were taken in the same round (side by
    side), so rounds are resampled together and what a round shares (a busy
    moment of the machine) cancels; otherwise each side is resampled on its
    own.  ``n`` is the smaller number of timings.  The median, not the best
    call, for repeated identical work: on a machine whose caches and page
    faults vary from call to call, the best call of one function and of
    another are not the same kind of luck, while the medians of interleaved
    rounds are.  The mean where the work differs on purpose from round to
    round (pretraining steps at random lambdas: the total time is what counts).
    """
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', found {statistic!r}")
    reduce = np.median if statistic == "median" else np.mean
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if not len(num) or not len(den) or (paired and len(num) != len(den)):
        raise ValueError(f"need timings on both sides{' in pairs' if paired else ''}: {len(num)} and {len(den)}")
    value = float(reduce(num) / reduce(den))
    rng = np.random.default_rng(seed)
    pick_num = rng.integers(0, len(num), size=(n_resamples, len(num)))
    pick_den = pick_num if paired else rng.integers(0, len(den), size=(n_resamples, len(den)))
    replicates = reduce(num[pick_num], axis=1) / reduce(den[pick_den], axis=1)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return RatioEstimate(value, float(low), float(high), min(len(num), len(den)))


def at_most(benchmark: str, key: str, quantity: str, value: float, limit: float) -> Result:
    """A ratio whose goal is ``value <= limit``."""
    return Result(benchmark, quantity, value, "x", f"<= {limit:.2f}x", value <= limit, key)


def above(benchmark: str, key: str, quantity: str, value: float, limit: float) -> Result:
    """A ratio whose goal is ``value > limit``."""
    return Result(benchmark, quantity, value, "x", f"> {limit:.2f}x", value > limit, key)


def at_least(benchmark: str, key: str, quantity: str, value: float, limit: float, unit: str = "x") -> Result:
    """A quantity whose goal is ``value >= limit`` (a ratio by default)."""
    goal = f">= {limit:.2f}x" if unit == "x" else f">= {format_value(limit, unit)}"
    return Result(benchmark, quantity, value, unit, goal, value >= limit, key)


def info(benchmark: str, key: str, quantity: str, value: float, unit: str) -> Result:
    """A result without a goal (informative)."""
    return Result(benchmark, quantity, value, unit, None, None, key)


def format_interval(r: Result) -> str:
    """``1.62x [1.55, 1.70] n=50``: the value, and its interval and n where it has them."""
    text = format_value(r.value, r.unit)
    if r.low is not None and r.high is not None:
        low, high = (format_value(v, r.unit).removesuffix(r.unit).strip() for v in (r.low, r.high))
        text += f" [{low}, {high}]"
    if r.n is not None:
        text += f" n={r.n}"
    return text


def format_value(value: float, unit: str) -> str:
    """``1.0234x``-style text: ratios with enough digits to compare against a goal."""
    if not math.isfinite(value):
        return f"{value}{unit}"
    if unit == "x":
        return f"{value:.3f}x" if abs(value) < 3 else f"{value:.1f}x"
    if unit == "":
        return f"{value:.2g}" if 0 < abs(value) < 0.01 else f"{value:.3g}"
    if unit == "%":
        return f"{value:.1f}%"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def keep_freed_memory() -> bool:
    """Keep freed memory in this process (``ofactl.malloc_tuning``), as ``ofactl extract`` does.

    Otherwise glibc returns every freed tensor above 32 MB to the kernel and
    the next one of that size page-faults in again (about 1 us per 4 KiB page
    on a VM): whether a call pays that depends on the allocator's history, so
    the same function measured twice can differ 3x.  ``run_all.py`` and each
    benchmark's ``main()`` call this first; ``bench_malloc.py`` measures the
    difference itself, in child processes.
    """
    from ofactl.malloc_tuning import keep_freed_memory as keep

    return keep()


def side_by_side(fns: dict[str, Callable[[], object]], rounds: int, calls_per_round: int = 1,
                 warmup: bool = False) -> dict[str, list[float]]:
    """Per round, the time in seconds of each function, the functions interleaved round by round.

    The i-th times of all functions share round i: pairs for
    :func:`timing_ratio`.  ``calls_per_round`` > 1 calls each function that
    many times in a row and keeps the fastest, so that each is also measured
    with its own data in the caches (otherwise the second of two functions on
    the same input would find it there, the first not).  ``warmup``: one
    untimed call of each first (kernel selection, allocator).
    """
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            calls = []
            for _ in range(calls_per_round):
                t0 = time.perf_counter()
                fn()
                calls.append(time.perf_counter() - t0)
            times[name].append(min(calls))
    return times
