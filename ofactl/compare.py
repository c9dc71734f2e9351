"""Paired comparison of two runs in a results table: is model A at one point better than model B at another?

    >>> c = compare_runs("results.csv", "ks", "ofa-lmax2@35ms", "fixed-lam1")
    >>> c.difference.diff, c.difference.low, c.difference.high, c.verdict

A *run* is selected by ``MODEL[@POINT][:PRECISION]`` among the ``ok`` test
rows of one task (all its seeds):

* ``MODEL`` alone: the model's only point for the task (an error lists the
  points when it has several);
* ``@90ms`` (``@0.09s``): the rows asked at that target frame period;
* ``@lambda=1.2``: rows asked by lambda (no target period);
* ``@learned`` / ``@learned-init0.5``: a learned lambda (``probe
  --learn-lambda``), by its variant;
* ``@best``: the model's grid point (a period or lambda, not learned) with the
  best *dev* score of the task's primary metric, mean over seeds: the grid's
  best chosen without looking at test;
* ``:bf16`` / ``:fp32``: the rows of that precision, where a point was run in
  both (e.g. ``ofa@90ms:fp32`` against ``ofa@90ms:bf16``).

Both runs are scored on the utterances they share (from their per-utterance
outcome files) with one paired bootstrap (:func:`ofactl.stats.paired_difference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofactl.errors import OfactlError

if TYPE_CHECKING:
    import pandas as pd

    from ofactl.outcomes import Outcomes
    from ofactl.stats import Difference, Interval


@dataclass(frozen=True)
class RunSpec:
    """``MODEL[@POINT][:PRECISION]`` as typed."""

    model: str
    point: str | None = None
    precision: str | None = None

    @classmethod
    def parse(cls, text: str) -> "RunSpec":
        from ofactl.precision import PRECISIONS

        text = text.strip()
        if not text or text.startswith("@"):
            raise OfactlError(f"cannot read the run {text!r}", hint="write MODEL or MODEL@POINT, e.g. ofa-lmax2@90ms")
        rest, colon, precision = text.rpartition(":")
        if colon and precision.strip() in PRECISIONS and precision.strip() != "auto" and rest.strip():
            text, precision = rest, precision.strip()
        else:
            precision = None
        model, _, point = text.partition("@")
        return cls(model.strip(), point.strip() or None, precision)

    def __str__(self) -> str:
        return self.model + (f"@{self.point}" if self.point else "") + (f":{self.precision}" if self.precision else "")


def point_name(variant: str, target_period_ms: float | None, lam: float | None) -> str:
    """How a row's point is written in a spec: ``90ms``, ``lambda=1``, or its learned variant."""
    variant = str(variant or "")
    if variant.startswith("learned"):
        return variant
    if target_period_ms is not None and target_period_ms == target_period_ms:
        from ofactl.period import FramePeriod

        return str(FramePeriod(round(float(target_period_ms), 3)))
    return f"lambda={float(lam):g}" if lam is not None and lam == lam else "?"


@dataclass
class Run:
    """The rows and outcomes of one side of a comparison."""

    spec: RunSpec
    label: str                    # "ofa-lmax2@35ms"
    point: str
    rows: Any                     # DataFrame: the test rows of the metric, one per seed
    outcomes: list["Outcomes"] = field(default_factory=list)
    note: str = ""                # e.g. "best on dev among 6 points"

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.rows["seed"])

    @property
    def measured_period_ms(self) -> float:
        return float(self.rows["measured_period_ms"].mean())

    @property
    def lam(self) -> float:
        return float(self.rows["lambda"].mean())


def _points(df: "pd.DataFrame") -> list[str]:
    return [point_name(v, t, lam) for v, t, lam in
            zip(df["variant"].fillna("").astype(str), df["target_period_ms"], df["lambda"])]


def select_run(df: "pd.DataFrame", results: str | Path, task: str, spec: RunSpec | str, metric: str,
               layer: str | None = None, primary: str | None = None) -> Run:
    """The rows of ``spec`` for ``task``/``metric`` in a table read by :func:`~ofactl.results.read_results`,
    with their outcomes loaded.  One :class:`OfactlError` line for a missing model, an ambiguous or absent
    point, an infeasible point or a row without outcomes."""
    from ofactl.outcomes import load_outcomes, resolve_outcomes_path

    spec = RunSpec.parse(spec) if isinstance(spec, str) else spec
    mine = df[(df["task"] == task) & (df["model"] == spec.model)]
    if layer is not None:
        mine = mine[mine["layer"].astype(str) == str(layer)]
    if spec.precision is not None:
        mine = mine[mine["precision"].astype(str) == spec.precision]
    if mine.empty:
        models = sorted(set(df.loc[df["task"] == task, "model"].astype(str)))
        where = "".join([f" at layer {layer}" if layer else "", f" in {spec.precision}" if spec.precision else ""])
        raise OfactlError(f"no {task} rows for model {spec.model!r}{where}",
                          hint=f"models with {task} rows: {', '.join(models) or 'none'}")
    mine = mine.assign(point=_points(mine))
    test = mine[(mine["split"] == "test") & (mine["metric"] == metric)]
    note = ""
    point = spec.point
    if point == "best":
        grid = mine[~mine["variant"].astype(str).str.startswith("learned") & (mine["split"] == "dev")
                    & (mine["metric"] == (primary or metric)) & (mine["status"] == "ok")]
        if grid.empty:
            raise OfactlError(f"model {spec.model} has no dev rows for {task}, so no best point",
                              hint="@best picks the grid point with the best dev score")
        hib = bool(grid["higher_is_better"].iloc[0])
        means = grid.groupby(["point", "layer"])["value"].mean()
        best = means.idxmax() if hib else means.idxmin()
        point, chosen_layer = best
        test = test[test["layer"].astype(str) == str(chosen_layer)]
        note = f"best on dev {primary or metric} among {len(means)} point(s)"
    if point is not None:
        wanted = _normalise_point(point)
        if wanted == "learned":
            matched = test[test["point"].astype(str).str.startswith("learned")]
        else:
            matched = test[test["point"] == wanted]
        if matched.empty:
            have = ", ".join(sorted(set(mine["point"]))) or "none"
            raise OfactlError(f"model {spec.model} has no {task} {metric} test row at {point}",
                              hint=f"its points: {have}")
        test = matched
    # one run: one point, layer and precision (seeds of fp32 and bf16 features are never pooled)
    groups = sorted(set(zip(test["point"], test["layer"].astype(str), test["precision"].astype(str))))
    if len(groups) > 1:
        layers = {g[1] for g in groups}
        precisions = {g[2] for g in groups}
        options = ", ".join(f"{spec.model}@{p}" + (f":{prec}" if len(precisions) > 1 else "")
                            + (f" (layer {lay})" if len(layers) > 1 else "") for p, lay, prec in groups)
        raise OfactlError(f"{spec} names {len(groups)} runs of {task}",
                          hint=f"give one: {options}" + (" and --layer" if len(layers) > 1 else ""))
    if test.empty:
        raise OfactlError(f"model {spec.model} has no {task} {metric} test row")
    ok = test[test["status"] == "ok"]
    if ok.empty:
        status = ", ".join(sorted(set(test["status"])))
        raise OfactlError(f"{spec} is {status} for {task}, so there is nothing to compare",
                          hint=str(test["note"].iloc[0])[:200] or None)
    refs = ok["outcomes"].fillna("").astype(str)
    if (refs == "").any():
        raise OfactlError(f"{spec}: its {task} rows have no per-utterance outcomes (written by ofactl 0.1?)",
                          hint="re-run the point with this ofactl to compare it")
    outcomes = [load_outcomes(resolve_outcomes_path(results, ref)) for ref in refs]
    label = f"{spec.model}@{groups[0][0]}" + (f":{groups[0][2]}" if groups[0][2] != "fp32" or spec.precision else "")
    return Run(spec, label, groups[0][0], ok, outcomes, note)


def _normalise_point(point: str) -> str:
    """A typed point as :func:`point_name` writes it (``0.09s`` -> ``90ms``; ``lam1`` -> ``lambda=1``)."""
    from ofactl.period import FramePeriod

    text = point.strip()
    if text.startswith("learned"):
        return text
    if text.startswith(("lambda=", "lam=", "lam")):
        value = text.split("=", 1)[1] if "=" in text else text[3:]
        try:
            return f"lambda={float(value):g}"
        except ValueError:
            raise OfactlError(f"cannot read the lambda in {point!r}", hint="write e.g. MODEL@lambda=1") from None
    try:
        return str(FramePeriod.parse(text))
    except OfactlError:
        raise OfactlError(f"cannot read the point {point!r}",
                          hint="a period (90ms), lambda=X, learned[-initX] or best") from None


@dataclass
class Comparison:
    """Two runs and their paired difference."""

    task: str
    metric: str
    a: Run
    b: Run
    difference: "Difference"
    a_interval: "Interval"
    b_interval: "Interval"

    @property
    def verdict(self) -> str:
        return self.difference.verdict(self.a.label, self.b.label)

    def to_dict(self) -> dict[str, Any]:
        d = self.difference
        return {"task": self.task, "metric": self.metric, "higher_is_better": d.higher_is_better,
                "a": self._side(self.a, self.a_interval), "b": self._side(self.b, self.b_interval),
                "difference": d.diff, "ci_low": d.low, "ci_high": d.high, "level": d.level, "n_utterances": d.n,
                "n_resamples": d.n_resamples, "margin": d.margin, "better": d.better, "equivalent": d.equivalent,
                "verdict": self.verdict}

    @staticmethod
    def _side(run: Run, ci: "Interval") -> dict[str, Any]:
        return {"run": run.label, "value": ci.value, "ci_low": ci.low, "ci_high": ci.high, "seeds": run.seeds,
                "measured_period_ms": run.measured_period_ms, "lambda": run.lam, "note": run.note}


def compare_runs(results: str | Path, task: str, a: str | RunSpec, b: str | RunSpec, *, metric: str | None = None,
                 margin: float | None = None, layer: str | None = None, n_resamples: int | None = None,
                 seed: int | None = None, warn=None) -> Comparison:
    """Select runs ``a`` and ``b`` of ``task`` in the results table and compare them pairwise.

    ``metric`` defaults to the task's primary metric; ``margin`` (in the
    metric's units, e.g. 0.02 for 2 points of accuracy) adds an equivalence
    verdict.

    Raises:
        OfactlError: an unknown task or metric, a run that cannot be selected
            (see :func:`select_run`), no shared utterance.
    """
    from ofactl.results import read_results
    from ofactl.stats import N_RESAMPLES, SEED, interval, paired_difference
    from ofactl.tasks import get_task

    t = get_task(task)
    metric = metric or t.primary.name
    if metric not in {m.name for m in t.metrics}:
        raise OfactlError(f"task {task} has no metric {metric!r}", hint=f"its metrics: {', '.join(m.name for m in t.metrics)}")
    if margin is not None and margin < 0:
        raise OfactlError(f"--margin must be >= 0, found {margin:g}")
    n_resamples = N_RESAMPLES if n_resamples is None else n_resamples
    seed = SEED if seed is None else seed
    df = read_results(results, warn=warn)
    if task not in set(df["task"]):
        raise OfactlError(f"{results} has no rows of task {task}",
                          hint=f"tasks there: {', '.join(sorted(set(df['task']))) or 'none'}")
    run_a = select_run(df, results, task, a, metric, layer, t.primary.name)
    run_b = select_run(df, results, task, b, metric, layer, t.primary.name)
    for run in (run_a, run_b):
        wrong = {o.task for o in run.outcomes} - {task}
        if wrong:
            raise OfactlError(f"{run.label}: its outcome files are of task {', '.join(wrong)}, not {task}")
    diff = paired_difference(run_a.outcomes, run_b.outcomes, metric, margin=margin, n_resamples=n_resamples,
                             seed=seed)
    shared = sorted(set.intersection(*(set(o.ids) for o in (*run_a.outcomes, *run_b.outcomes))))
    ia = interval([o.select(shared) for o in run_a.outcomes], metric, n_resamples=n_resamples, seed=seed)
    ib = interval([o.select(shared) for o in run_b.outcomes], metric, n_resamples=n_resamples, seed=seed)
    return Comparison(task, metric, run_a, run_b, diff, ia, ib)


__all__ = ["Comparison", "Run", "RunSpec", "compare_runs", "point_name", "select_run"]
