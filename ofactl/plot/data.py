"""The results table made ready to draw: reading and cleaning, kinds of model, compute by period, intervals, the Pareto front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ofactl.errors import OfactlError

from ofactl.plot.styles import TASKS, Warn, _default_warn

if TYPE_CHECKING:
    import pandas as pd

# --------------------------------------------------------------------------- reading and cleaning


def load_results(results: "str | Path | pd.DataFrame", warn: Warn | None = None) -> "pd.DataFrame":
    """A validated results DataFrame from a path (:func:`ofactl.results.read_results`) or a DataFrame.

    Raises:
        OfactlError: not a results table (missing columns), a newer schema.
    """
    import pandas as pd

    from ofactl.results import REQUIRED, read_results

    warn = warn or _default_warn
    if isinstance(results, pd.DataFrame):
        missing = [c for c in REQUIRED if c not in results.columns]
        if missing:
            raise OfactlError(f"results table: missing column(s) {', '.join(missing)}",
                              hint="read it with ofactl.results.read_results")
        df = results.copy()
        for column, empty in (("ci_low", float("nan")), ("ci_high", float("nan")), ("outcomes", ""), ("variant", "")):
            if column not in df.columns:
                df[column] = empty
        if "variant" in results.columns:
            return df
        from ofactl.results import _variants

        df["variant"] = _variants(df)
        return df
    return read_results(results, warn=warn)


def _clean(df: "pd.DataFrame", warn: Warn) -> "pd.DataFrame":
    """Drop rows of unknown tasks and non-finite ok values, with a warning each (older schemas are read as they are)."""
    import numpy as np
    import pandas as pd

    from ofactl.results import SCHEMA_VERSION

    if "schema_version" in df.columns:
        version = pd.to_numeric(df["schema_version"], errors="coerce")
        if (version > SCHEMA_VERSION).any():
            raise OfactlError(f"results written by a newer ofactl (schema {int(version.max())}; this one reads "
                              f"{SCHEMA_VERSION})", hint="upgrade ofactl to plot them")
    unknown = ~df["task"].isin(list(TASKS))
    if unknown.any():
        names = ", ".join(repr(t) for t in sorted(df.loc[unknown, "task"].astype(str).unique()))
        warn(f"skipped {int(unknown.sum())} row(s) of unknown task(s) {names} (known: {', '.join(TASKS)})")
        df = df[~unknown]
    value = pd.to_numeric(df["value"], errors="coerce")
    bad = (df["status"] == "ok") & ~np.isfinite(value.to_numpy(dtype=float))
    if bad.any():
        warn(f"skipped {int(bad.sum())} 'ok' row(s) whose value is not a finite number")
        df = df[~bad]
    return df


#: adaptive-lambda rows (``ofactl probe --learn-lambda``, variant ``learned-...``) are drawn as "<model>, learned λ"
LEARNED_SUFFIX = ", learned λ"


def classify_models(df: "pd.DataFrame") -> dict[str, str]:
    """``{model: "ofa" | "baseline" | "previous"}`` by the rule in the module docstring."""
    from ofactl.results import BASELINE, PREVIOUS

    kinds: dict[str, str] = {}
    rows = df[df["task"] != "profile"] if (df["task"] != "profile").any() else df
    for model, group in rows.groupby("model", sort=True):
        variants = set(group["variant"].fillna("").astype(str))
        if PREVIOUS in variants:
            kinds[str(model)] = "previous"
        elif BASELINE in variants:
            kinds[str(model)] = "baseline"
        else:
            periods = group["target_period_ms"].where(group["target_period_ms"].notna(), group["measured_period_ms"])
            per_task = periods.dropna().round(1).groupby(group["task"]).nunique()
            kinds[str(model)] = "ofa" if len(per_task) and per_task.max() > 1 else "baseline"
    return kinds


def _as_list(values: Sequence[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out = [v.strip() for item in values for v in str(item).split(",") if v.strip()]
    return out or None


def _macs_by_period(df: "pd.DataFrame") -> dict[str, tuple[list[float], list[float]]]:
    """Per model: (log period, log MACs/s) points, sorted by period, from its ``ofactl profile`` rows
    (``macs_per_s``) and from every other row that has both ``macs_per_second`` and a frame period."""
    import numpy as np
    import pandas as pd

    period = df["measured_period_ms"].where(df["measured_period_ms"].notna(), df["target_period_ms"])
    prof = (df["task"] == "profile") & (df["metric"] == "macs_per_s") & (df["status"] == "ok")
    macs = df["macs_per_second"].where(~prof, pd.to_numeric(df["value"], errors="coerce"))
    ok = period.notna() & (period > 0) & macs.notna() & (macs > 0)
    out = {}
    for model, index in df.index[ok].groupby(df.loc[ok, "model"]).items():
        points = pd.DataFrame({"lp": np.log(period[index].to_numpy(dtype=float)),
                               "lv": np.log(macs[index].to_numpy(dtype=float))})
        points = points.groupby("lp", as_index=False)["lv"].mean().sort_values("lp")
        out[str(model)] = (points["lp"].tolist(), points["lv"].tolist())
    return out


def prepare_results(
    results: "str | Path | pd.DataFrame",
    *,
    tasks: Sequence[str] | str | None = None,
    models: Sequence[str] | str | None = None,
    x: str = "period",
    split: str = "test",
    warn: Warn | None = None,
) -> "pd.DataFrame":
    """The points to draw: one row per (task, metric, model, frame period), seeds averaged.

    Columns: ``task, metric, model, kind, status, period_ms, x, value,
    ci_low, ci_high, higher_is_better, n_seeds, n_utterances`` (``x`` is the
    frame period in ms or GMAC/s; ``value`` is NaN for infeasible / failed
    points, the mean over seeds otherwise; ``ci_low``/``ci_high`` its 95%
    interval: the row's own for one seed, the bootstrap pooled over seeds
    (:func:`ofactl.stats.interval`) for several, NaN when unknown;
    ``period_ms`` is the target period, else the measured one).

    Raises:
        OfactlError: an unknown ``x``, a task or model not in the table, or
            nothing left to draw.
    """
    import numpy as np
    import pandas as pd

    warn = warn or _default_warn
    if x not in ("period", "macs"):
        raise OfactlError(f"--x must be period or macs, found {x!r}")
    df = _clean(load_results(results, warn), warn)
    if df.empty:
        raise OfactlError("the results table has no rows to plot", hint="run `ofactl sweep` or `ofactl probe` first")
    known_macs = _macs_by_period(df)

    wanted_tasks = _as_list(tasks)
    present = [t for t in TASKS if t in set(df["task"])]
    if wanted_tasks is None:
        wanted_tasks = [t for t in present if t != "profile"] or present
    else:
        unknown = [t for t in wanted_tasks if t not in TASKS]
        if unknown:
            raise OfactlError(f"unknown task(s) {', '.join(unknown)}", hint=f"known tasks: {', '.join(TASKS)}")
        absent = [t for t in wanted_tasks if t not in present]
        if absent:
            raise OfactlError(f"no rows for task(s) {', '.join(absent)} in the results",
                              hint=f"tasks there: {', '.join(present) or 'none'}")
    df = df[df["task"].isin(wanted_tasks)]
    wanted_models = _as_list(models)
    if wanted_models is not None:
        have = sorted(set(df["model"].astype(str)))
        absent = [m for m in wanted_models if m not in have]
        if absent:
            raise OfactlError(f"no rows for model(s) {', '.join(absent)} in the selected tasks",
                              hint=f"models there: {', '.join(have) or 'none'}")
        df = df[df["model"].isin(wanted_models)]

    # The split applies to the probe tasks; profile rows have none.
    probe = df["task"] != "profile"
    in_split = df["split"].astype(str) == split
    for task in sorted(set(df.loc[probe & ~in_split, "task"]) - set(df.loc[probe & in_split, "task"])):
        splits = ", ".join(sorted(set(df.loc[df["task"] == task, "split"].astype(str))))
        warn(f"task {task} has no {split!r} rows (splits: {splits}): use --split to plot them")
    df = df[~probe | in_split]
    if df.empty:
        raise OfactlError("nothing to plot after filtering", hint="check --tasks, --models and --split")

    learned = df["variant"].fillna("").astype(str).str.startswith("learned")
    if learned.any():  # adaptive-lambda rows: their own marker, apart from the model's line
        df = df.assign(model=df["model"].astype(str).where(~learned, df["model"].astype(str) + LEARNED_SUFFIX))
    kinds = classify_models(df)
    kinds.update({m: "learned" for m in set(df.loc[learned, "model"])})
    period = df["measured_period_ms"].where(df["measured_period_ms"].notna(), df["target_period_ms"])
    target = df["target_period_ms"].where(df["target_period_ms"].notna(), df["measured_period_ms"])
    df = df.assign(_period=period, period_ms=target)
    if x == "period":
        xs = df["_period"]
        missing_what = "frame period (measured_period_ms and target_period_ms are empty)"
    else:
        xs = df["macs_per_second"].copy()
        for i in df.index[xs.isna() | ~(xs > 0)]:
            points = known_macs.get(str(df.at[i, "model"]))
            p = df.at[i, "_period"]
            if points is None or not (p > 0):
                continue
            lp, lv = points
            if lp[0] - 1e-9 <= math.log(p) <= lp[-1] + 1e-9:
                xs[i] = math.exp(float(np.interp(math.log(p), lp, lv)))
        xs = xs / 1e9
        missing_what = "MACs (empty macs_per_second, and no `ofactl profile` row of the model around its period)"
    df = df.assign(x=xs)
    no_x = df["x"].isna() | ~np.isfinite(df["x"].to_numpy(dtype=float)) | ~(df["x"] > 0)
    if no_x.any():
        names = ", ".join(sorted(set(df.loc[no_x, "model"].astype(str))))
        warn(f"skipped {int(no_x.sum())} row(s) without a {missing_what}: model(s) {names}")
        df = df[~no_x]
    if df.empty:
        raise OfactlError(f"no row has a {missing_what}",
                          hint="run `ofactl profile --results FILE` for each model, or use --x period"
                          if x == "macs" else "the rows need a measured or target frame period")

    key = df["period_ms"].where(df["period_ms"].notna(), df["x"]).round(3)
    df = df.assign(_key=key)
    intervals = _Intervals(Path(results) if isinstance(results, (str, Path)) else None, warn)
    points = []
    for (task, metric, model, _), group in df.groupby(["task", "metric", "model", "_key"], sort=False):
        ok = group[group["status"] == "ok"]
        low = high = float("nan")
        if len(ok):
            status, value, xv = "ok", float(ok["value"].mean()), float(ok["x"].mean())
            if task != "profile":  # a compute profile is a count, not a test-set measurement
                low, high = intervals.of(ok, str(metric))
        else:
            status = "infeasible" if (group["status"] == "infeasible").any() else "failed"
            value, xv = float("nan"), float(group["x"].mean())
        hib = group["higher_is_better"]
        points.append(dict(task=task, metric=metric, model=str(model), kind=kinds.get(str(model), "ofa"),
                           status=status, period_ms=float(group["period_ms"].iloc[0]), x=xv, value=value,
                           ci_low=low, ci_high=high, higher_is_better=bool(hib.mode().iloc[0]),
                           n_seeds=int(group["seed"].nunique()), n_utterances=int(ok["n_utterances"].max())
                           if len(ok) else 0))
    intervals.report()
    out = pd.DataFrame(points)
    task_order = {t: i for i, t in enumerate(TASKS)}
    out["_t"] = out["task"].map(task_order)
    out = out.sort_values(["_t", "metric", "model", "x"], kind="stable").drop(columns=["_t"]).reset_index(drop=True)
    return out


class _Intervals:
    """The interval of a point (its rows: one per seed), and one warning per kind of missing interval."""

    def __init__(self, results: Path | None, warn: Warn):
        self.results, self.warn = results, warn
        self.points = self.without = self.averaged = 0

    def of(self, rows: "pd.DataFrame", metric: str) -> tuple[float, float]:
        import numpy as np

        self.points += 1
        low = rows["ci_low"].to_numpy(dtype=float)
        high = rows["ci_high"].to_numpy(dtype=float)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            self.without += 1
            return float("nan"), float("nan")
        if len(rows) == 1:
            return float(low[0]), float(high[0])
        refs = rows["outcomes"].fillna("").astype(str)
        if self.results is not None and (refs != "").all():
            from ofactl.outcomes import load_outcomes, resolve_outcomes_path
            from ofactl.stats import interval

            try:
                runs = [load_outcomes(resolve_outcomes_path(self.results, ref)) for ref in refs]
                ci = interval(runs, metric)
                return ci.low, ci.high
            except OfactlError:
                pass
        self.averaged += 1  # outcome files missing: the seeds' own intervals, averaged
        return float(low.mean()), float(high.mean())

    def report(self) -> None:
        if self.points and self.without == self.points:
            self.warn("the results table has no confidence intervals (written by ofactl 0.1, or before intervals "
                      "were measured): plotted without them; re-run the points to get them")
        elif self.without:
            self.warn(f"{self.without} of {self.points} point(s) have no confidence interval (older rows): "
                      "drawn without one")
        if self.averaged:
            self.warn(f"{self.averaged} multi-seed point(s) without their outcome files: their interval is the "
                      "average of the seeds' own intervals, not the pooled bootstrap")


# --------------------------------------------------------------------------- pareto


def pareto_front(x: Sequence[float], y: Sequence[float], *, cheaper_is_larger_x: bool, higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both cost and metric, sorted by x.

    Cost is ``-x`` for a frame period (a longer period is cheaper) and ``x``
    for MACs.  A point is dominated when another is at least as cheap and at
    least as good, and strictly better in one of the two.
    """
    cost = [-v if cheaper_is_larger_x else v for v in x]
    good = [v if higher_is_better else -v for v in y]
    keep = []
    for i in range(len(cost)):
        dominated = any(cost[j] <= cost[i] and good[j] >= good[i] and (cost[j] < cost[i] or good[j] > good[i])
                        for j in range(len(cost)) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (x[i], y[i]))
