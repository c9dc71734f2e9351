"""Trade-off figures and tables from the results table, and the calibration curve.

* :func:`plot_results` draws one panel per (task, metric): the metric against
  the measured frame period (or against compute, MACs per second of audio),
  one line per OFA model through its periods, fixed-rate baselines and
  previous works as crosses, infeasible and failed points as hollow markers
  on the panel's worst edge.  It returns a :class:`matplotlib.figure.Figure`;
  the CLI saves it.
* :func:`pivot_results` / :func:`render_pivot`: the same data as a table
  (model x frame period per task and metric), for ``ofactl plot --table``.
* :func:`plot_calibration`: frame period (log) against lambda, with the
  p10-p90 band of the utterances' periods.

Rules
-----
* **Kinds of model.**  A model is a *previous work* when a note of one of its
  rows contains "previous" or "prior work"; a *baseline* when a note contains
  "baseline", or when its rows (task ``profile`` aside) have one frame
  period per task (a fixed-rate model cannot draw a line; its measured
  period may differ a little from task to task).  Every other model is an
  *OFA model*, drawn as a line through its periods.  Baselines are drawn as
  ``x``, previous works as ``+``.  Rows of a learned lambda (``probe
  --learn-lambda``, note "learned lambda ...") are drawn apart from their
  model's line, as a star named "<model>, learned λ".
* **x.**  ``x="period"``: the row's ``measured_period_ms`` (its
  ``target_period_ms`` when not measured); log scale for KS, IC, SID and ER as
  in the paper, linear for the others (``log_x`` overrides).  ``x="macs"``:
  the row's ``macs_per_second``, else interpolated (log-log in the period)
  from the model's ``ofactl profile`` rows (task ``profile``, metric
  ``macs_per_s``) and its other rows with ``macs_per_second`` in the same
  table (never extrapolated).
* **Seeds** are averaged; an infeasible or failed point is shown where no seed
  gave a value.
* **Intervals.**  Each point carries its 95% bootstrap interval over test
  utterances (``ci_low``/``ci_high``; for several seeds, the interval of their
  mean pooled from the per-utterance outcome files, :func:`ofactl.stats.interval`):
  a light band along an OFA model's line, error bars on baselines and learned
  lambdas.  A table without intervals (ofactl 0.1) is drawn without them, with
  one warning.
* **Percent.**  Accuracy, PER, WER, CER and F1 stored as fractions (every
  value of the panel in [0, 1]) are shown in %.
* **Bad input** never raises a traceback: a file that is not a results table,
  misses columns or comes from a newer ofactl is one :class:`OfactlError`;
  rows from an older schema, of an unknown task, with a non-finite value or
  without a frame period are skipped and reported through ``warn``.
* **Rendering.**  No pyplot: figures are :class:`~matplotlib.figure.Figure`
  objects with an Agg canvas attached here, so nothing global changes (no
  backend switch) and it works headless.  Panels are 3.3 in wide (a paper's
  column), fonts 7-8 pt, colours Okabe-Ito (colour-blind safe) plus a marker
  per model for greyscale print.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofactl.errors import OfactlError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_SUFFIXES",
    "METRICS",
    "OKABE_ITO",
    "TASKS",
    "check_figure_path",
    "classify_models",
    "load_results",
    "pareto_front",
    "pivot_results",
    "plot_calibration",
    "plot_results",
    "prepare_results",
    "render_pivot",
    "save_figure",
]

#: Okabe & Ito (2008), in the order used for models (yellow last: low contrast on white).
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "D", "^", "v", "<", ">", "p")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
PANEL_WIDTH_IN = 3.3
PANEL_HEIGHT_IN = 2.5
MAX_COLUMNS = 3
FONT_PT = 8
SMALL_PT = 7


@dataclass(frozen=True)
class TaskStyle:
    title: str
    log_x: bool


#: Known tasks (SUPERB subset and the compute profile), in panel order.
TASKS: dict[str, TaskStyle] = {
    "pr": TaskStyle("PR (phoneme recognition)", False),
    "asr": TaskStyle("ASR (speech recognition)", False),
    "ks": TaskStyle("KS (keyword spotting)", True),
    "ic": TaskStyle("IC (intent classification)", True),
    "sid": TaskStyle("SID (speaker identification)", True),
    "er": TaskStyle("ER (emotion recognition)", True),
    "qbe": TaskStyle("QbE (query by example)", False),
    "sf": TaskStyle("SF (slot filling)", False),
    "st": TaskStyle("ST (speech translation)", False),
    "profile": TaskStyle("compute profile", True),
}


@dataclass(frozen=True)
class MetricStyle:
    label: str
    unit: str = ""
    percent: bool = False  # fractions are shown in %
    scale: float = 1.0


METRICS: dict[str, MetricStyle] = {
    "accuracy": MetricStyle("accuracy", percent=True),
    "per": MetricStyle("PER", percent=True),
    "wer": MetricStyle("WER", percent=True),
    "cer": MetricStyle("CER", percent=True),
    "f1": MetricStyle("slot F1", percent=True),
    "slot_f1": MetricStyle("slot F1", percent=True),
    "slot_type_f1": MetricStyle("slot type F1", percent=True),
    "slot_value_cer": MetricStyle("slot value CER", percent=True),
    "mtwv": MetricStyle("MTWV"),
    "bleu": MetricStyle("BLEU"),
    "macs_per_s": MetricStyle("MACs", "GMAC per s of audio", scale=1e-9),
}


def _metric_style(metric: str) -> MetricStyle:
    if metric in METRICS:
        return METRICS[metric]
    if metric.startswith("throughput_b") and metric[len("throughput_b"):].isdigit():
        return MetricStyle(f"throughput, batch {metric[len('throughput_b'):]}", "audio s per s")
    return MetricStyle(metric)


Warn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


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
    kinds: dict[str, str] = {}
    rows = df[df["task"] != "profile"] if (df["task"] != "profile").any() else df
    for model, group in rows.groupby("model", sort=True):
        notes = " ".join(str(n) for n in group["note"].fillna("")).lower()
        if "previous" in notes or "prior work" in notes:
            kinds[str(model)] = "previous"
        elif "baseline" in notes:
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


# --------------------------------------------------------------------------- figures


def _new_figure(width_in: float, height_in: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend for this figure only; pyplot and global state untouched
    return fig


def _style_axes(ax) -> None:
    ax.tick_params(labelsize=SMALL_PT, which="both")
    ax.grid(True, which="major", linewidth=0.4, alpha=0.4)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)


def _log_ticks(axis) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _y_label(metric: str, higher_is_better: bool, percent: bool) -> str:
    style = _metric_style(metric)
    unit = "%" if percent else style.unit
    direction = "higher is better" if higher_is_better else "lower is better"
    return f"{style.label}{f' ({unit})' if unit else ''}\n({direction})"


def _panel_scale(metric: str, values) -> tuple[float, bool]:
    """(multiplier, shown in %?) for a panel's values."""
    import numpy as np

    style = _metric_style(metric)
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if style.percent and finite.size and finite.min() >= 0 and finite.max() <= 1:
        return 100.0, True
    return style.scale, False


def plot_results(
    results: "str | Path | pd.DataFrame",
    *,
    tasks: Sequence[str] | str | None = None,
    models: Sequence[str] | str | None = None,
    x: str = "period",
    pareto: bool = False,
    split: str = "test",
    log_x: bool | None = None,
    warn: Warn | None = None,
) -> "Figure":
    """One panel per (task, metric): the metric against frame period or compute, one line per model.

    Args:
        results: a results CSV path or a DataFrame from :func:`ofactl.results.read_results`.
        tasks: tasks to draw (default: every task in the table but ``profile``).
        models: models to draw (default: all).
        x: ``"period"`` (measured frame period, ms) or ``"macs"`` (GMAC per
            second of audio).
        pareto: draw each panel's Pareto frontier (best metric for its cost).
        split: the split of the probe tasks to draw.
        log_x: force a log (True) or linear (False) x axis; None: log for
            KS, IC, SID, ER and the profile with ``x="period"``, linear otherwise.
        warn: called with one line per group of skipped rows (default: ``warnings.warn``).

    Returns:
        The figure (Agg canvas attached; ``fig.savefig(path)`` writes it).

    Raises:
        OfactlError: see :func:`prepare_results`.
    """
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    points = prepare_results(results, tasks=tasks, models=models, x=x, split=split, warn=warn)
    kinds = points.drop_duplicates("model").set_index("model")["kind"].to_dict()
    order = {"ofa": 0, "learned": 1, "baseline": 2, "previous": 3}
    model_order = sorted(kinds, key=lambda m: (order[kinds[m]], m))
    colour = {m: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(model_order)}
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(model_order)}
    suffix = {"ofa": "", "learned": "", "baseline": " (baseline)", "previous": " (previous work)"}

    panels = list(points.groupby(["task", "metric"], sort=False))
    metrics_per_task = points.groupby("task")["metric"].nunique().to_dict()
    nrows = math.ceil(len(panels) / MAX_COLUMNS)
    ncols = math.ceil(len(panels) / nrows)  # 4 panels: 2 x 2, not 3 + 1
    fig = _new_figure(PANEL_WIDTH_IN * ncols, PANEL_HEIGHT_IN * nrows + 0.45)
    handles: dict[str, Any] = {}
    seen_status: set[str] = set()

    for index, ((task, metric), panel) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        _style_axes(ax)
        hib = bool(panel["higher_is_better"].mode().iloc[0])
        mult, percent = _panel_scale(metric, panel["value"])
        use_log = log_x if log_x is not None else (x == "period" and TASKS[task].log_x)
        if use_log:
            ax.set_xscale("log")
            _log_ticks(ax.xaxis)
        edge = blended_transform_factory(ax.transData, ax.transAxes)
        edge_y = 0.0 if hib else 1.0  # the worst side of the panel
        for model in model_order:
            rows = panel[panel["model"] == model].sort_values("x")
            if rows.empty:
                continue
            ok = rows[rows["status"] == "ok"]
            kind = kinds[model]
            label = model + suffix[kind]
            if len(ok):
                if kind == "ofa":
                    (line,) = ax.plot(ok["x"], ok["value"] * mult, color=colour[model], marker=marker[model],
                                      markersize=3.5, linewidth=1.2, label=label)
                else:
                    (line,) = ax.plot(ok["x"], ok["value"] * mult, color=colour[model], linestyle="none",
                                      marker={"baseline": "x", "learned": "*"}.get(kind, "+"),
                                      markersize=9 if kind == "learned" else 6.5,
                                      markeredgewidth=1.5, label=label)
                line.set_gid(f"{kind}:{model}")
                handles.setdefault(label, line)
                _draw_intervals(ax, ok, kind, colour[model], mult, f"{kind}:{model}")
            for status, shape in (("infeasible", "X"), ("failed", "s")):
                bad = rows[rows["status"] == status]
                if bad.empty:
                    continue
                seen_status.add(status)
                (mark,) = ax.plot(bad["x"], [edge_y] * len(bad), transform=edge, linestyle="none", marker=shape,
                                  color=colour[model], markersize=6, markerfacecolor="none", markeredgecolor=colour[model],
                                  markeredgewidth=1.2, clip_on=False, zorder=5, label="_nolegend_")
                mark.set_gid(f"{status}:{model}")
                if not len(ok):  # a model with no value in this panel still gets its legend entry
                    proxy = Line2D([], [], color=colour[model], marker=marker[model] if kind == "ofa" else "x",
                                   linestyle="-" if kind == "ofa" else "none", markersize=4)
                    handles.setdefault(label, proxy)
        if pareto:
            ok = panel[panel["status"] == "ok"].reset_index(drop=True)
            if len(ok) >= 1:
                front = pareto_front(ok["x"].tolist(), ok["value"].tolist(), cheaper_is_larger_x=(x == "period"),
                                     higher_is_better=hib)
                (line,) = ax.plot(ok.loc[front, "x"], ok.loc[front, "value"] * mult, color="0.25", linewidth=4,
                                  alpha=0.3, solid_capstyle="round", zorder=0.5, label="Pareto frontier")
                line.set_gid("pareto")
                handles.setdefault("Pareto frontier", line)
        title = TASKS[task].title
        if metrics_per_task.get(task, 1) > 1:
            title += f": {_metric_style(metric).label}"
        ax.set_title(title, fontsize=FONT_PT)
        ax.set_xlabel("frame period (ms)" if x == "period" else "compute (GMAC per second of audio)", fontsize=FONT_PT)
        ax.set_ylabel(_y_label(metric, hib, percent), fontsize=FONT_PT)
        if panel["status"].eq("ok").sum() == 0:
            ax.set_yticks([])

    for status, shape, text in (("infeasible", "X", "infeasible (on the axis edge)"), ("failed", "s", "failed")):
        if status in seen_status:
            handles[text] = Line2D([], [], linestyle="none", marker=shape, markersize=6, markerfacecolor="none",
                                   markeredgecolor="0.3", markeredgewidth=1.2)
    first = [m + suffix[kinds[m]] for m in model_order]
    handles = {k: handles[k] for k in [*first, *handles] if k in handles}  # models in legend order, then the rest
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=min(len(handles), 2 if ncols == 1 else ncols + 1), fontsize=SMALL_PT, frameon=False)
    return fig


def _draw_intervals(ax, ok: "pd.DataFrame", kind: str, colour: str, mult: float, gid: str) -> None:
    """95% intervals: a light band along an OFA model's line (readable with several lines per panel), error
    bars on a baseline's or learned lambda's markers.  Points without an interval get none."""
    import numpy as np

    lo, hi = ok["ci_low"].to_numpy(dtype=float) * mult, ok["ci_high"].to_numpy(dtype=float) * mult
    has = np.isfinite(lo) & np.isfinite(hi)
    if not has.any():
        return
    x = ok["x"].to_numpy(dtype=float)
    if kind == "ofa":
        band = ax.fill_between(x, lo, hi, where=has, color=colour, alpha=0.14, linewidth=0, zorder=0.8,
                               interpolate=False)
        band.set_gid(f"ci:{gid}")
        if has.sum() == 1:  # a band needs two points: one interval is a bar
            y = ok["value"].to_numpy(dtype=float)[has] * mult
            bars = ax.errorbar(x[has], y, yerr=[y - lo[has], hi[has] - y], fmt="none", ecolor=colour,
                               elinewidth=0.8, capsize=2)
            bars[2][0].set_gid(f"ci:{gid}")
    else:
        y = ok["value"].to_numpy(dtype=float)[has] * mult
        bars = ax.errorbar(x[has], y, yerr=[y - lo[has], hi[has] - y], fmt="none", ecolor=colour, elinewidth=1.0,
                           capsize=2.5, alpha=0.8)
        bars[2][0].set_gid(f"ci:{gid}")


def plot_calibration(cal) -> "Figure":
    """Frame period (log y, ms) against lambda: the dataset period, the median and the p10-p90 band.

    Args:
        cal: a :class:`ofactl.calibrate.Calibration`.
    """
    import numpy as np

    fig = _new_figure(PANEL_WIDTH_IN, PANEL_HEIGHT_IN)
    ax = fig.add_subplot(1, 1, 1)
    _style_axes(ax)
    lam = np.asarray(cal.lambdas, dtype=float)

    def column(values):
        return np.asarray([np.nan if v is None else v for v in values], dtype=float)

    p10, p50, p90 = column(cal.p10_ms), column(cal.p50_ms), column(cal.p90_ms)
    band = np.isfinite(p10) & np.isfinite(p90)
    if band.any():
        ax.fill_between(lam, p10, p90, where=band, color=OKABE_ITO[0], alpha=0.2, linewidth=0,
                        label="p10–p90 of utterances")
    if np.isfinite(p50).any():
        ax.plot(lam, p50, color=OKABE_ITO[0], linestyle="--", linewidth=1.0, label="median utterance")
    ax.plot(lam, cal.period_ms, color=OKABE_ITO[1], linewidth=1.5, label="dataset (audio / frames)")
    ax.axhline(20.0, color="0.5", linestyle=":", linewidth=0.8)
    ax.set_yscale("log")
    _log_ticks(ax.yaxis)
    ax.set_xlim(0.0, max(2.0, float(lam[-1])) if cal.lam_max >= 1.999 else float(cal.lam_max))
    ax.set_xlabel("lambda", fontsize=FONT_PT)
    ax.set_ylabel("measured frame period (ms)", fontsize=FONT_PT)
    source = " ".join(str(v) for v in (Path(cal.data).name if cal.data else None, cal.split) if v)
    ax.set_title((f"{source}\n" if source else "") + f"calibrated {cal.range_text()}, {cal.n_utterances} utterances",
                 fontsize=FONT_PT)
    ax.legend(fontsize=SMALL_PT, frameon=False, loc="upper left")
    return fig


def check_figure_path(path: str | Path) -> Path:
    """The output path, if its suffix is one matplotlib writes here (.png, .pdf, .svg)."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise OfactlError(f"cannot write a figure to {path}: unknown suffix {path.suffix or '(none)'!r}",
                          hint=f"use one of {', '.join(FIGURE_SUFFIXES)}")
    return path


def save_figure(fig: "Figure", path: str | Path, dpi: int = 300) -> Path:
    """Write ``fig`` (PNG at ``dpi``, or PDF / SVG); creates the parent directory."""
    path = check_figure_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=dpi)
    except OSError as err:
        raise OfactlError(f"cannot write {path}: {err.strerror or err}") from None
    return path


# --------------------------------------------------------------------------- tables


def _period_text(ms: float) -> str:
    from ofactl.period import FramePeriod

    return str(FramePeriod(round(float(ms), 1)))


def pivot_results(
    results: "str | Path | pd.DataFrame",
    *,
    tasks: Sequence[str] | str | None = None,
    models: Sequence[str] | str | None = None,
    split: str = "test",
    warn: Warn | None = None,
) -> dict[tuple[str, str], "pd.DataFrame"]:
    """Per (task, metric) a model x frame period table of text cells, in the plot's units.

    Cells are ``value [low, high]`` (the mean over seeds and its 95%
    interval, in % where the plot shows %; the value alone when the interval
    is unknown), ``infeasible``, ``failed`` or empty.  Columns are target periods
    (``"90ms"``), sorted; the row index is the model.
    """
    import pandas as pd

    points = prepare_results(results, tasks=tasks, models=models, x="period", split=split, warn=warn)
    tables = {}
    for (task, metric), panel in points.groupby(["task", "metric"], sort=False):
        mult, percent = _panel_scale(metric, panel["value"])
        periods = sorted(panel["period_ms"].unique())
        table = pd.DataFrame("", index=sorted(panel["model"].unique()), columns=[_period_text(p) for p in periods])
        table.attrs["unit"] = "%" if percent else _metric_style(metric).unit
        table.attrs["higher_is_better"] = bool(panel["higher_is_better"].mode().iloc[0])
        for row in panel.itertuples():
            cell = row.status
            if row.status == "ok" and math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
                cell = f"{row.value * mult:.3g} [{row.ci_low * mult:.3g}, {row.ci_high * mult:.3g}]"
            elif row.status == "ok":
                cell = f"{row.value * mult:.4g}"
            table.loc[row.model, _period_text(row.period_ms)] = cell
        tables[(task, metric)] = table
    return tables


def render_pivot(tables: dict[tuple[str, str], "pd.DataFrame"]) -> list:
    """Rich tables for :func:`pivot_results` (one per task and metric)."""
    from rich.table import Table

    out = []
    for (task, metric), frame in tables.items():
        unit = frame.attrs.get("unit", "")
        direction = "higher is better" if frame.attrs.get("higher_is_better", True) else "lower is better"
        table = Table(title=f"{TASKS[task].title}: {_metric_style(metric).label}" + (f" ({unit})" if unit else "")
                      + f", {direction}; cells: value [95% CI]; columns: target frame period",
                      title_justify="left")
        table.add_column("model")
        for column in frame.columns:
            table.add_column(column, justify="right")
        for model, row in frame.iterrows():
            table.add_row(str(model), *[str(v) or "-" for v in row.tolist()])
        out.append(table)
    return out
