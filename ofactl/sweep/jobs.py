"""A sweep's jobs: one (point, seed, learning rate) each, run anywhere, its result left in a file of its own."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ofactl.errors import first_line
from ofactl.period import FramePeriod
from ofactl.results import ResultRow
from ofactl.tasks import Task

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
        result["error"] = first_line(err, with_type=True)
    if result["status"] != "failed":  # a failure is not kept: a re-run tries again
        atomic_write_text(job.candidate, json.dumps(result, allow_nan=True), make_dirs=True)
    return result


def _read_candidate(job: SweepJob) -> dict[str, Any] | None:
    try:
        return json.loads(job.candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
