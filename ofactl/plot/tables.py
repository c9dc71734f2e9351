"""The trade-off as tables (model x frame period per task and metric), for ``ofactl plot --table``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ofactl.plot.data import prepare_results
from ofactl.plot.figures import _panel_scale
from ofactl.plot.styles import TASKS, Warn, _metric_style

if TYPE_CHECKING:
    import pandas as pd

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
