"""The figures: trade-off panels (no pyplot, an Agg canvas per figure), the calibration curve, saving."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofactl.errors import OfactlError

from ofactl.plot.data import pareto_front, prepare_results
from ofactl.plot.styles import (
    FIGURE_SUFFIXES,
    FONT_PT,
    MARKERS,
    MAX_COLUMNS,
    OKABE_ITO,
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    SMALL_PT,
    TASKS,
    Warn,
    _metric_style,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

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
