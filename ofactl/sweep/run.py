"""Running a sweep: features once per split for all points, then the jobs, then the best learning rate's rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofactl.errors import OfactlError, first_line
from ofactl.period import MIN_PERIOD_MS, FramePeriod
from ofactl.progress import Progress
from ofactl.results import ResultRow
from ofactl.sweep.jobs import _MODELS, _PREPARED, SweepJob, _failed_rows, _read_candidate, jobs_dir, run_job
from ofactl.sweep.plan import SweepPlan, plan_sweep
from ofactl.tasks import Task


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
            outcome = {"status": "failed", "lr": job.lr, "dev": {}, "rows": [], "error": first_line(outcome, with_type=True)}
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
            if p is not None and p >= MIN_PERIOD_MS:
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
