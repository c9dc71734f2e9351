"""Sweep a downstream task across frame periods: one probe per (period, seed), the learning rate chosen on dev.

    >>> summary = run_sweep("sid", "/data/VoxCeleb1", model_dir, results="results.csv")

For every period (default: :func:`default_periods`, log-spaced over the
model's calibrated range) the features are extracted once (cached, see
:mod:`ofactl.probe`), then for every seed a head is trained at each
learning rate of a small log-spaced grid (default: the task's rate times
0.1, 1 and 10) and the one with the best dev score (ties: the lower dev loss)
is measured on test; its
rows (every test metric plus the dev primary metric) go into the results
table with the chosen ``lr`` and the dev scores of the grid in ``note``.

A task without training (qbe) is scored once per period instead: no
learning-rate grid, only the first seed, ``lr`` empty.

``pooling="avg"`` sweeps the average-pooling baseline instead (model
``<name>+avgpool``), ``pooling="uniform"`` fixed-length pooling inside the
model (``<name>+uniform``); see :mod:`ofactl.probe`.

Resumable: a (model, task, period, seed, layer) that already has a test row
with status ``ok`` or ``infeasible`` is skipped.  A failure (any error while
extracting or training) becomes ``status=failed`` rows with the error in
``note``, and the sweep goes on; a re-run retries it.  Rows are appended
after each seed, under the results file's lock, so several sweeps may write
to one table at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ofactl.errors import OfactlError
from ofactl.period import FramePeriod
from ofactl.results import ResultRow, append_rows, read_results
from ofactl.tasks import Task, get_task

#: called as ``progress(done, total, description)``
Progress = Callable[[int, int, str], None]


def default_periods(calibration, n: int = 6) -> list[FramePeriod]:
    """``n`` log-spaced periods from 20 ms (or the calibrated minimum) to the calibrated maximum."""
    lo = max(20.0, calibration.min_period_ms)
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


def finished(results: str | Path, sha: str, task: str, model: str | None = None) -> set[tuple]:
    """Keys of (period, seed, layer) runs already in the results table with a final status."""
    path = Path(results)
    if not path.is_file():
        return set()
    df = read_results(path)
    if model is not None:
        df = df[df["model"] == model]
    df = df[(df["model_sha256"] == sha) & (df["task"] == task) & (df["split"] == "test")
            & df["status"].isin(["ok", "infeasible"])]
    return {_key(sha, task, None if math.isnan(target) else target, seed, layer, None if math.isnan(lam) else lam)
            for target, seed, layer, lam in zip(df["target_period_ms"], df["seed"], df["layer"], df["lambda"])}


@dataclass
class SweepSummary:
    results: Path
    written: int = 0
    skipped: list[tuple[str, int]] = field(default_factory=list)    # (period, seed) already done
    failed: list[tuple[str, int, str]] = field(default_factory=list)  # (period, seed, error)
    infeasible: list[tuple[str, int]] = field(default_factory=list)
    chosen: dict[tuple[str, int], float] = field(default_factory=dict)  # (period, seed) -> lr
    scored: list[tuple[str, int]] = field(default_factory=list)  # (period, seed) of a task without training
    #: (period, seed) -> the test primary metric's row (value, ci_low, ci_high)
    measured: dict[tuple[str, int], ResultRow] = field(default_factory=dict)


def _error_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if not isinstance(err, OfactlError) else text


def run_sweep(
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
    device: str | None = None,
    progress: Progress | None = None,
    pooling: str = "cif",
) -> SweepSummary:
    """Run (or resume) a sweep; rows are appended to ``results`` as they are produced.

    ``lambdas`` asks for points by lambda instead of by period (e.g. a model
    pretrained at one fixed lambda, probed at that lambda); not with ``periods``.
    """
    from ofactl.inference import OFAModel, load_model
    from ofactl.probe import default_features_dir, model_label, prepare, rows_for, score_untrained, train_and_test
    from ofactl.workspace import resolve_model

    task = get_task(task) if isinstance(task, str) else task
    m = model if isinstance(model, OFAModel) else load_model(resolve_model(model), device=device or "cpu")
    if periods is not None and lambdas is not None:
        raise OfactlError("give --periods or --lambdas, not both")
    if lambdas is not None:
        bad = [lam for lam in lambdas if not 0.0 <= float(lam) < 2.0]
        if bad or not lambdas:
            raise OfactlError(f"--lambdas must lie in [0, 2), found {', '.join(map(str, bad)) or 'none'}")
        if pooling != "cif":
            raise OfactlError(f"--pooling {pooling} is asked by --periods, not --lambdas")
        points: list[tuple[FramePeriod | None, float | None]] = [(None, float(lam)) for lam in lambdas]
    elif periods is None:
        if m.calibration is None:
            raise OfactlError(f"{m.model_dir} is not calibrated, so there is no default period range",
                              hint=f"run `ofactl calibrate DATA --model {m.model_dir}`, or pass --periods")
        periods = default_periods(m.calibration)
    if lambdas is None:
        points = [(FramePeriod.parse(p) if isinstance(p, str) else p, None) for p in periods]
    lrs = list(lrs) if lrs else default_lrs(task)
    seeds = list(seeds) if task.trainable else list(seeds)[:1]  # nothing is trained: one run per period
    results = Path(results)
    features_dir = Path(features_dir) if features_dir is not None else default_features_dir(results)
    done = finished(results, m.model_sha256, task.name, model_label(m, pooling))
    summary = SweepSummary(results)
    total = len(points) * len(seeds)
    count = 0

    def advance(text: str) -> None:
        nonlocal count
        count += 1
        if progress:
            progress(count, total, text)

    if progress:
        progress(0, total, f"{task.name}")
    if pooling in ("cif", "uniform"):
        _extract_points(task, data, m, points, done, seeds, layer, features_dir, pooling,
                        lambda text: progress(count, total, text) if progress else None)
    for p, lam in points:
        name = str(p) if p is not None else f"lambda={lam:g}"
        todo = [s for s in seeds
                if _key(m.model_sha256, task.name, p.ms if p is not None else None, s, str(layer), lam) not in done]
        for s in seeds:
            if s not in todo:
                summary.skipped.append((name, s))
                advance(f"{task.name} {name} seed {s}: done before")
        if not todo:
            continue
        try:
            prep = prepare(task, data, m, period=p, lam=lam, layer=layer, features_dir=features_dir, pooling=pooling)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # recorded, and the sweep goes on
            line = _error_line(err)
            for s in todo:
                summary.written += append_rows(results, _failed_rows(task, m, p, s, layer, line, pooling=pooling,
                                                                     lam=lam))
                summary.failed.append((name, s, line))
                advance(f"{task.name} {name} seed {s}: failed")
            continue
        for s in todo:
            try:
                if prep.status == "infeasible":
                    rows, kind = rows_for(prep, None, seed=s, status="infeasible"), summary.infeasible
                elif not task.trainable:
                    rows, kind = rows_for(prep, score_untrained(prep, seed=s), seed=s), summary.scored
                else:
                    kind = None
                    outcomes = [train_and_test(prep, lr=lr, seed=s, max_epochs=max_epochs, patience=patience)
                                for lr in lrs]
                    best = outcomes[0]
                    for o in outcomes[1:]:
                        a, b = o.dev[task.primary.name], best.dev[task.primary.name]
                        if task.better(a, b) or (a == b and o.dev.get("loss", math.inf) < best.dev.get("loss", math.inf)):
                            best = o  # a tie on the metric goes to the lower dev loss
                    grid = ", ".join(f"{o.lr:g}: {o.dev[task.primary.name]:.4g}" for o in outcomes)
                    rows = rows_for(prep, best, seed=s, note=f"lr chosen on dev {task.primary.name} ({grid})")
                summary.written += append_rows(results, rows)  # a point counts as done once its rows are in
                if kind is not None:
                    kind.append((name, s))
                else:
                    summary.chosen[(name, s)] = rows[0].lr
                primary = [r for r in rows if r.split == "test" and r.metric == task.primary.name and r.status == "ok"]
                if primary:
                    summary.measured[(name, s)] = primary[0]
            except KeyboardInterrupt:
                raise
            except Exception as err:
                line = _error_line(err)
                summary.written += append_rows(results, _failed_rows(task, m, p, s, layer, line, prep, pooling,
                                                                     lam=lam))
                summary.failed.append((name, s, line))
            advance(f"{task.name} {name} seed {s}")
    return summary


def _extract_points(task: Task, data, m, points, done: set, seeds, layer, features_dir: Path, pooling: str,
                    say) -> None:
    """Every split's features at the lambdas of the points still to run, in one pass over the audio per split
    (the 20 ms part of the model once; :func:`ofactl.extract.extract_lambdas`).  A point that cannot be
    resolved (outside the calibrated range) or a pass that fails is left to the point's own run, which records it."""
    from ofactl.extract import Uniform, extract_lambdas
    from ofactl.probe import features_path, period_tag, uniform_tag

    wanted: dict[str, float | Uniform] = {}
    for p, lam in points:
        if all(_key(m.model_sha256, task.name, p.ms if p is not None else None, s, str(layer), lam) in done
               for s in seeds):
            continue
        if pooling == "uniform":
            if p is not None and p.ms >= 20.0:
                wanted[uniform_tag(p)] = Uniform(p.ms)
            continue
        try:
            value = m.lam_for(p) if p is not None else float(lam)
        except OfactlError:
            continue
        wanted[period_tag(p, value)] = value
    if len(wanted) < 2:
        return
    for split in task.splits:
        outputs = {features_path(features_dir, m.model_sha256, task.name, split, tag, layer): value
                   for tag, value in wanted.items()}
        say(f"{task.name} features {split} at {len(outputs)} periods")
        try:
            extract_lambdas(data, outputs, model=m, layer=layer, layout=task.layout, split=split, num_workers=0)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - each point extracts (and records a failure) on its own
            continue


def _failed_rows(task: Task, m, p: FramePeriod | None, seed: int, layer, note: str, prep=None,
                 pooling: str = "cif", lam: float | None = None) -> list[ResultRow]:
    from ofactl.probe import model_label
    from ofactl.results import AVGPOOL, UNIFORM

    common = dict(model=model_label(m, pooling), model_sha256=m.model_sha256, task=task.name,
                  variant={"avg": AVGPOOL, "uniform": UNIFORM}.get(pooling, ""),
                  target_period_ms=p.ms if p is not None else None,
                  lam=prep.lam if prep is not None and pooling == "cif" else lam,
                  measured_period_ms=prep.measured_period_ms if prep is not None else None,
                  status="failed", note=note, seed=seed, layer=str(layer))
    return [ResultRow(metric=metric.name, value=math.nan, higher_is_better=metric.higher_is_better, split="test",
                      **common) for metric in task.metrics]


__all__ = ["SweepSummary", "default_lrs", "default_periods", "finished", "run_sweep"]
