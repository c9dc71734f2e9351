"""Sweep a downstream task across frame periods: one probe per (period, seed), the learning rate chosen on dev.

    >>> summary = run_sweep("sid", "/data/VoxCeleb1", model_dir, results="results.csv")
    >>> summary = run_sweep(..., launcher=LocalPool(jobs=4))            # 4 processes on this machine
    >>> summary = run_sweep(..., launcher=Submitit(folder, params=slurm_params(partition="gpu", gpus=1)))

For every period (default: :func:`default_periods`, log-spaced over the
model's calibrated range) the features are extracted once (cached, see
:mod:`ofactl.probe`), then every (period, seed, learning rate) is one job
(:class:`SweepJob`; the learning rates are a small log-spaced grid, by
default the task's rate times 0.1, 1 and 10).  When all learning rates of a
(period, seed) are back, the one with the best dev score (ties: the lower dev
loss) gives the point its rows (every test metric plus the dev primary
metric) with the chosen ``lr`` and the dev scores of the grid in ``note``.

A task without training (qbe) is scored once per period instead: no
learning-rate grid, only the first seed, ``lr`` empty.

``pooling="avg"`` sweeps the average-pooling baseline instead (model
``<name>+avgpool``), ``pooling="uniform"`` fixed-length pooling inside the
model (``<name>+uniform``); see :mod:`ofactl.probe`.

Where jobs run is the launcher's business (:mod:`ofactl.launch`): in this
process, in N local processes, or as a SLURM job array.  A job never writes
the results table: it leaves its result in a file of its own under
``<results>.jobs/`` (atomic rename); only this process (the driver) appends
rows, through :func:`ofactl.results.append_rows`, whose pending files and
exclusive-creation lock are safe on a network file system.

Resumable: a (model, task, period, seed, layer) that already has a test row
with status ``ok`` or ``infeasible`` is skipped, and a job whose result file
is there is not run again.  A failure (an error while extracting or training,
or a job process that dies) becomes ``status=failed`` rows with the error in
``note``, and the sweep goes on; a re-run retries only the failed jobs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ofactl.errors import OfactlError
from ofactl.period import FramePeriod
from ofactl.progress import Progress
from ofactl.results import ResultRow, read_results
from ofactl.tasks import Task, get_task


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


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class SweepJob:
    """One probe training of a sweep: a point (a period, or a lambda), a seed and a learning rate (None for a
    task without training).  Everything a job needs travels in it, so it runs in any process or on any host
    that sees the same files."""

    task: str
    data: str
    model_dir: str
    model_sha256: str
    device: str
    results: str
    features_dir: str
    layer: str
    pooling: str
    period_ms: float | None
    lam: float | None
    seed: int
    lr: float | None
    max_epochs: int = 40
    patience: int = 6
    precision: str = "fp32"  # resolved: fp32 or bf16

    @property
    def point(self) -> str:
        return f"{self.period_ms:g}ms" if self.period_ms is not None else f"lambda={self.lam:g}"

    @property
    def group(self) -> tuple:
        """The jobs whose best learning rate gives one (point, seed) its rows."""
        return (self.period_ms, self.lam, self.seed)

    @property
    def candidate(self) -> Path:
        """Where the job leaves its result (beside the results table, see :func:`jobs_dir`)."""
        layer = "" if self.layer == "last" else f"-layer{self.layer}"
        lr = "untrained" if self.lr is None else f"lr{self.lr:g}"
        variant = "" if self.pooling == "cif" else f"{self.pooling}-"
        point = self.point.replace("=", "")
        precision = "" if self.precision == "fp32" else f"-{self.precision}"
        return (jobs_dir(self.results) / self.model_sha256[:12] / self.task
                / f"{variant}{point}{layer}{precision}-seed{self.seed}-{lr}.json")


def jobs_dir(results: str | Path) -> Path:
    """``<results>.jobs/``: each job's own result file until its point's rows are in the table."""
    results = Path(results)
    return results.with_name(results.name + ".jobs")


_MODELS: dict[tuple[str, str, str], Any] = {}  # one loaded model per (directory, device, precision) in a process
_PREPARED: dict[tuple, Any] = {}             # the last prepared point (its jobs differ only in lr and seed)


def _model(job: SweepJob):
    key = (job.model_dir, job.device, job.precision)
    if key not in _MODELS:
        from ofactl.inference import load_model

        _MODELS[key] = load_model(job.model_dir, device=job.device, precision=job.precision)
    return _MODELS[key]


def _prepared(job: SweepJob, m):
    from ofactl.period import FramePeriod
    from ofactl.probe import prepare

    key = (job.task, job.data, m.model_sha256, job.period_ms, job.lam, job.pooling, job.layer, job.features_dir)
    if key not in _PREPARED:
        _PREPARED.clear()  # (prepare closes the files the previous point read)
        layer = int(job.layer) if job.layer.lstrip("-").isdigit() else job.layer
        _PREPARED[key] = prepare(job.task, job.data, m, layer=layer, features_dir=job.features_dir,
                                 pooling=job.pooling, lam=job.lam,
                                 period=FramePeriod(job.period_ms) if job.period_ms is not None else None)
    return _PREPARED[key]


def _row_dicts(rows: list[ResultRow]) -> list[dict[str, Any]]:
    return [{f.name: getattr(r, f.name) for f in fields(r) if f.name != "per_utterance"} for r in rows]


def run_job(job: SweepJob) -> dict[str, Any]:
    """Train (or score) one job and leave its result at ``job.candidate``; returns that result.

    A job never writes the results table: its rows, with their outcomes saved
    beside the table, wait in the candidate file until the sweep's driver has
    every learning rate of the point and appends the best one's rows.  Any
    error becomes a ``failed`` result (the sweep goes on).
    """
    from ofactl.atomic import atomic_write_text
    from ofactl.probe import rows_for, score_untrained, train_and_test
    from ofactl.results import save_row_outcomes
    from ofactl.tasks import get_task

    task = get_task(job.task)
    result: dict[str, Any] = {"status": "failed", "lr": job.lr, "dev": {}, "rows": [], "error": ""}
    try:
        m = _model(job)
        prep = _prepared(job, m)
        if prep.status == "infeasible":
            rows = rows_for(prep, None, seed=job.seed, lr=job.lr, status="infeasible")
        elif not task.trainable:
            outcome = score_untrained(prep, seed=job.seed)
            rows, result["dev"] = rows_for(prep, outcome, seed=job.seed), outcome.dev
        else:
            outcome = train_and_test(prep, lr=job.lr, seed=job.seed, max_epochs=job.max_epochs, patience=job.patience)
            rows, result["dev"] = rows_for(prep, outcome, seed=job.seed), outcome.dev
        save_row_outcomes(job.results, rows)
        result.update(status=rows[0].status, rows=_row_dicts(rows))
        from ofactl import faults

        faults.point(f"sweep-job:{job.point}:{'untrained' if job.lr is None else f'lr{job.lr:g}'}")
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - recorded as a failed job
        result["error"] = _error_line(err)
    if result["status"] != "failed":  # a failure is not kept: a re-run tries again
        atomic_write_text(job.candidate, json.dumps(result, allow_nan=True), make_dirs=True)
    return result


def _read_candidate(job: SweepJob) -> dict[str, Any] | None:
    try:
        return json.loads(job.candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
        bad = [lam for lam in lambdas if not 0.0 <= float(lam) < 2.0]
        if bad or not lambdas:
            raise OfactlError(f"--lambdas must lie in [0, 2), found {', '.join(map(str, bad)) or 'none'}")
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


# ----------------------------------------------------------------------------- running


def run_sweep(task: Task | str, data: str | Path, model, *, results: str | Path, progress: Progress | None = None,
              launcher=None, **options: Any) -> SweepSummary:
    """Run (or resume) a sweep; rows are appended to ``results`` as each point's learning rates are done.

    ``options`` are :func:`plan_sweep`'s (``periods`` or ``lambdas``, ``lrs``,
    ``seeds``, ``layer``, ``features_dir``, ``max_epochs``, ``patience``,
    ``pooling``, ``job_device``); ``lambdas`` asks for points by lambda instead of
    by period (e.g. a model pretrained at one fixed lambda, probed at that
    lambda).  ``launcher`` runs the jobs (:mod:`ofactl.launch`; default: one
    after another in this process).  The features of every point are
    extracted here first, once per split for all points, so that no two jobs
    ever extract the same file.
    """
    from ofactl.launch import Inline

    plan = plan_sweep(task, data, model, results=results, **options)
    return execute(plan, launcher or Inline(), progress)


def execute(plan: SweepPlan, launcher, progress: Progress | None = None) -> SweepSummary:
    """Run a plan's jobs with ``launcher`` and put each point's rows in the table (see :func:`run_sweep`).

    Under torchrun every rank extracts its share of the features, then rank 0
    alone launches the jobs (the other ranks return an empty summary).
    """
    from ofactl import distributed as D

    task, m = plan.task, plan.model
    env = D.setup(str(m.device))
    if getattr(launcher, "name", "") == "inline":
        for job in plan.jobs:  # jobs in this process use the model already loaded
            _MODELS[(job.model_dir, job.device, job.precision)] = m
    summary = SweepSummary(plan.results)
    for job in plan.stale:  # left by a run killed after its rows were in: not needed any more
        job.candidate.unlink(missing_ok=True)
    groups: dict[tuple, list[SweepJob]] = {}
    for job in plan.jobs:
        groups.setdefault(job.group, []).append(job)
    total = len(groups) + len(plan.skipped)
    count = 0

    def advance(text: str) -> None:
        nonlocal count
        count += 1
        if progress:
            progress(count, total, text)

    if progress and env.is_main:
        progress(0, total, task.name)
    for name, s in plan.skipped:
        summary.skipped.append((name, s))
        advance(f"{task.name} {name} seed {s}: done before")
    if not plan.jobs:
        return summary
    _extract_points(plan, lambda text: progress(count, total, text) if progress else None)
    if env.distributed:
        D.barrier(env)
        D.cleanup(env)
        if not env.is_main:
            return SweepSummary(plan.results)
        import os

        os.environ.update(WORLD_SIZE="1", RANK="0")  # the jobs are single-process work from here on
    got: dict[tuple, dict[SweepJob, dict]] = {g: {} for g in groups}
    todo = []
    for job in plan.jobs:  # results left by an earlier, interrupted run are used as they are
        found = _read_candidate(job)
        if found is not None:
            got[job.group][job] = found
        else:
            todo.append(job)
    for group, jobs in groups.items():
        if len(got[group]) == len(jobs):
            _finish_group(plan, jobs, got[group], summary)
            advance(f"{task.name} {jobs[0].point} seed {jobs[0].seed}")
    for job, outcome in launcher.run(run_job, todo):
        if isinstance(outcome, BaseException):
            outcome = {"status": "failed", "lr": job.lr, "dev": {}, "rows": [], "error": _error_line(outcome)}
        got[job.group][job] = outcome
        jobs = groups[job.group]
        if len(got[job.group]) == len(jobs):
            _finish_group(plan, jobs, got[job.group], summary)
            advance(f"{task.name} {job.point} seed {job.seed}")
    _remove_empty(jobs_dir(plan.results))
    from ofactl.stream import close_handles

    _PREPARED.clear()
    close_handles()
    return summary


def _remove_empty(root: Path) -> None:
    """Remove ``root`` and the folders below it that hold nothing (a writer creates its folder again)."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [root]:
        try:
            folder.rmdir()
        except OSError:
            pass


def _finish_group(plan: SweepPlan, jobs: list[SweepJob], got: dict[SweepJob, dict], summary: SweepSummary) -> None:
    """Every learning rate of one (point, seed) is back: its rows (the dev-best lr's) go into the table."""
    from ofactl.outcomes import resolve_outcomes_path
    from ofactl.results import append_rows

    task, m = plan.task, plan.model
    first = jobs[0]
    p = FramePeriod(first.period_ms) if first.period_ms is not None else None
    name, s = first.point, first.seed
    failed = [got[j] for j in jobs if got[j]["status"] == "failed"]
    results = [(j, got[j]) for j in jobs if got[j]["status"] != "failed"]
    if failed:
        lam = next((r["rows"][0].get("lam") for _, r in results if r["rows"]), first.lam)
        line = failed[0]["error"] or "failed"
        summary.written += append_rows(plan.results, _failed_rows(task, m, p, s, plan.layer, line,
                                                                  pooling=plan.pooling, lam=lam))
        summary.failed.append((name, s, line))
        return  # the learning rates that did finish stay on disk: a re-run trains only the failed ones
    ok = [(j, r) for j, r in results if r["status"] == "ok"]
    if not ok:  # infeasible at this period, whatever the learning rate
        chosen, kind = results[0], summary.infeasible
    elif not task.trainable:
        chosen, kind = ok[0], summary.scored
    else:
        chosen, kind = ok[0], None
        for j, r in ok[1:]:
            a, b = r["dev"][task.primary.name], chosen[1]["dev"][task.primary.name]
            if task.better(a, b) or (a == b and r["dev"].get("loss", math.inf) < chosen[1]["dev"].get("loss", math.inf)):
                chosen = (j, r)  # a tie on the metric goes to the lower dev loss
    rows = [ResultRow(**d) for d in chosen[1]["rows"]]
    if kind is None:
        grid = ", ".join(f"{r['lr']:g}: {r['dev'][task.primary.name]:.4g}" for _, r in ok)
        note = f"lr chosen on dev {task.primary.name} ({grid})"
        for row in rows:
            row.note = "; ".join(n for n in (note, row.note) if n)
    summary.written += append_rows(plan.results, rows)  # a point counts as done once its rows are in
    if kind is not None:
        kind.append((name, s))
    else:
        summary.chosen[(name, s)] = rows[0].lr
    primary = [r for r in rows if r.split == "test" and r.metric == task.primary.name and r.status == "ok"]
    if primary:
        summary.measured[(name, s)] = primary[0]
    for j, r in results:  # the other learning rates' outcome files, then every job file of the point
        if j is not chosen[0]:
            for ref in {d.get("outcomes") for d in r["rows"] if d.get("outcomes")}:
                resolve_outcomes_path(plan.results, ref).unlink(missing_ok=True)
    for j in jobs:
        j.candidate.unlink(missing_ok=True)


def _extract_points(plan: SweepPlan, say) -> None:
    """Every split's features at the points still to run, in one pass over the audio per split (the 20 ms
    part of the model once; :func:`ofactl.extract.extract_lambdas`).  A point that cannot be resolved (outside
    the calibrated range) or a pass that fails is left to the point's own jobs, which record it."""
    from ofactl.extract import Uniform, extract_lambdas
    from ofactl.probe import extraction_layer, features_path, period_tag, uniform_tag

    m, task = plan.model, plan.task
    wanted: dict[str, float | Uniform] = {}
    for p, lam in {(j.period_ms, j.lam) for j in plan.jobs}:
        if plan.pooling == "avg":
            wanted[period_tag(None, 0.0)] = 0.0  # one 20 ms file, pooled to every period when read
        elif plan.pooling == "uniform":
            if p is not None and p >= 20.0:
                wanted[uniform_tag(FramePeriod(p))] = Uniform(p)
        else:
            try:
                value = m.lam_for(FramePeriod(p)) if p is not None else float(lam)
            except OfactlError:
                continue
            wanted[period_tag(FramePeriod(p) if p is not None else None, value)] = value
    if not wanted:
        return
    for split in task.splits:
        layer = extraction_layer(plan.layer)  # every layer for SUPERB's weighted sum
        outputs = {features_path(plan.features_dir, m.model_sha256, task.name, split, tag, layer, plan.data,
                                 m.precision):
                   value for tag, value in wanted.items()}
        say(f"{task.name} features {split} at {len(outputs)} period(s)")
        try:
            extract_lambdas(plan.data, outputs, model=m, layer=layer, layout=task.layout_of(plan.data), split=split,
                            num_workers=0, overwrite=True)  # a cache: whatever else is at the path is replaced
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
                  status="failed", note=note, seed=seed, layer=str(layer), precision=m.precision)
    return [ResultRow(metric=metric.name, value=math.nan, higher_is_better=metric.higher_is_better, split="test",
                      **common) for metric in task.metrics]


__all__ = ["SweepJob", "SweepPlan", "SweepSummary", "default_lrs", "default_periods", "execute", "finished", "jobs_dir",
           "plan_sweep", "run_job", "run_sweep"]
