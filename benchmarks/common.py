"""What a benchmark reports: one measured quantity, with its goal if it has one.

Each ``bench_*.py`` exposes ``measure(quick=False, **options) -> list[Result]``
(and prints its own detailed table from ``main()``); ``run_all.py`` gathers the
results of all of them into one table.  Benchmarks are reports: a missed goal is
marked, never raised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One row of the benchmark table.

    ``key`` is a stable identifier (``"extract.ratio_90_cnn"``) for scripts and
    tests; ``quantity`` is the human-readable label.  ``unit`` is ``"x"`` for a
    ratio measured side by side in one run (the numbers that matter on a noisy
    machine), otherwise ``"ms"``, ``"audio-s/s"``, ``"MB"``, ``"MB/hour"``,
    ``"%"`` or ``""``.  ``goal`` is a short text such as ``"<= 1.10x"``;
    ``met`` is None when there is no goal.
    """

    benchmark: str
    quantity: str
    value: float
    unit: str
    goal: str | None = None
    met: bool | None = None
    key: str = ""


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


def best_time(fn: Callable[[], object], repeat: int, warmup: bool = True) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds (after one untimed call with ``warmup``)."""
    if warmup:
        fn()  # kernel selection, allocator
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
