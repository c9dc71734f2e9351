"""A sweep's plan: its points x seeds x learning rates, less what the results table already has."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ofactl.errors import OfactlError
from ofactl.period import MIN_PERIOD_MS, FramePeriod, check_lambda
from ofactl.results import read_results
from ofactl.sweep.jobs import SweepJob
from ofactl.tasks import Task, get_task


def default_periods(calibration, n: int = 6) -> list[FramePeriod]:
    """``n`` log-spaced periods from 20 ms (or the calibrated minimum) to the calibrated maximum."""
    lo = max(MIN_PERIOD_MS, calibration.min_period_ms)
    hi = calibration.max_period_ms
    if hi <= lo * 1.01:
        return [FramePeriod(round(lo, 1))]
    values = np.exp(np.linspace(math.log(lo), math.log(hi), n))
    return [FramePeriod(round(float(v), 1)) for v in values]


def default_lrs(task: Task, n: int = 3) -> list[float]:
    """A log-spaced grid around the task's learning rate (``n=3``: x0.1, x1, x10)."""
    if n == 1:
        return [task.lr]
    exponents = np.linspace(-1, 1, n)
    return [float(f"{task.lr * 10 ** e:.3g}") for e in exponents]


def _key(sha: str, task: str, target_ms: float | None, seed: int, layer: str, lam: float | None = None) -> tuple:
    """A run's identity: the target period, or (for a run asked by lambda, no target period) the lambda."""
    point = ("lam", round(float(lam), 6)) if target_ms is None and lam is not None else (
        None if target_ms is None else round(float(target_ms), 3))
    return (sha, task, point, int(seed), str(layer))


def finished(results: str | Path, sha: str, task: str, model: str | None = None, precision: str = "fp32") -> set[tuple]:
    """Keys of (period, seed, layer) runs already in the results table with a final status, at ``precision``."""
    from ofactl.results import pending_dir

    path = Path(results)
    if not path.is_file() and not pending_dir(path).is_dir():
        return set()
    df = read_results(path)
    if model is not None:
        df = df[df["model"] == model]
    df = df[(df["model_sha256"] == sha) & (df["task"] == task) & (df["split"] == "test") & (df["precision"] == precision)
            & df["status"].isin(["ok", "infeasible"])]
    return {_key(sha, task, None if math.isnan(target) else target, seed, layer, None if math.isnan(lam) else lam)
            for target, seed, layer, lam in zip(df["target_period_ms"], df["seed"], df["layer"], df["lambda"])}


# ----------------------------------------------------------------------------- the plan


@dataclass
class SweepPlan:
    """What a sweep will do: its jobs (those not done before), the (point, seed) pairs it skips, and what the
    features cost (see :func:`estimate`)."""

    task: Task
    model: Any
    data: Path
    results: Path
    features_dir: Path
    points: list[tuple[FramePeriod | None, float | None]]
    seeds: list[int]
    lrs: list[float | None]
    layer: str | int
    pooling: str
    jobs: list[SweepJob] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    stale: list[SweepJob] = field(default_factory=list)   # jobs of points already in the table


def plan_sweep(
    task: Task | str,
    data: str | Path,
    model,
    *,
    results: str | Path,
    periods: Sequence[FramePeriod | str] | None = None,
    lambdas: Sequence[float] | None = None,
    lrs: Sequence[float] | None = None,
    seeds: Sequence[int] = (0,),
    layer: str | int = "last",
    features_dir: str | Path | None = None,
    max_epochs: int = 40,
    patience: int = 6,
    pooling: str = "cif",
    job_device: str | None = None,
) -> SweepPlan:
    """The sweep's points x seeds x learning rates of ``model`` (a loaded :class:`~ofactl.inference.OFAModel`;
    the jobs load it again from its directory, in its precision, on ``job_device``, default the model's device:
    ``auto`` lets each cluster job take its node's GPU), less what the results table already has."""
    from ofactl.inference import require_model
    from ofactl.probe import default_features_dir, model_label

    task = get_task(task) if isinstance(task, str) else task
    task.check_requirements()
    m = require_model(model, "plan_sweep")
    if periods is not None and lambdas is not None:
        raise OfactlError("give --periods or --lambdas, not both")
    if lambdas is not None:
        if not lambdas:
            raise OfactlError("--lambdas is empty", hint="e.g. --lambdas 0.5,1")
        lambdas = [check_lambda(lam, "--lambdas") for lam in lambdas]
        if pooling != "cif":
            raise OfactlError(f"--pooling {pooling} is asked by --periods, not --lambdas")
        points: list[tuple[FramePeriod | None, float | None]] = [(None, float(lam)) for lam in lambdas]
    else:
        if periods is None:
            if m.calibration is None:
                raise OfactlError(f"{m.model_dir} is not calibrated, so there is no default period range",
                                  hint=f"run `ofactl calibrate DATA --model {m.model_dir}`, or pass --periods")
            periods = default_periods(m.calibration)
        points = [(FramePeriod.parse(p) if isinstance(p, str) else p, None) for p in periods]
    grid: list[float | None] = (list(lrs) if lrs else default_lrs(task)) if task.trainable else [None]
    seeds = list(seeds) if task.trainable else list(seeds)[:1]  # nothing is trained: one run per period
    results = Path(results)
    features_dir = Path(features_dir) if features_dir is not None else default_features_dir(results)
    done = finished(results, m.model_sha256, task.name, model_label(m, pooling), m.precision)
    plan = SweepPlan(task, m, Path(data), results, features_dir, points, seeds, grid, layer, pooling)
    for p, lam in points:
        for s in seeds:
            jobs = [SweepJob(task.name, str(Path(data).absolute()), str(Path(m.model_dir).absolute()), m.model_sha256,
                             str(job_device or m.device), str(results.absolute()), str(features_dir.absolute()),
                             str(layer), pooling, p.ms if p is not None else None, lam, s, lr, max_epochs, patience,
                             m.precision)
                    for lr in grid]
            if _key(m.model_sha256, task.name, p.ms if p is not None else None, s, str(layer), lam) in done:
                plan.skipped.append((jobs[0].point, s))
                plan.stale += [j for j in jobs if j.candidate.exists()]
            else:
                plan.jobs += jobs
    return plan
