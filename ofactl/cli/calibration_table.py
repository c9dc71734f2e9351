"""The CLI's table of a calibration (``ofactl calibrate``, ``ofactl info``)."""

from __future__ import annotations

import numpy as np
from rich.table import Table

from ofactl.calibrate import Calibration
from ofactl.period import format_period

_SHOWN_LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 1.9, 1.95, 1.98, 1.99, 1.995, 1.999, 1.9999)


def render_table(cal: Calibration, all_rows: bool = False) -> Table:
    """A rich table of the calibration: lambda, dataset period, p10 / p50 / p90.

    Shows the grid points nearest to round lambdas (0, 0.25, ..., 1.9, 1.95,
    ..., and the last point) unless ``all_rows``.
    """
    n = len(cal.lambdas)
    if all_rows:
        rows = list(range(n))
    else:
        lam = np.asarray(cal.lambdas)
        wanted = [v for v in _SHOWN_LAMBDAS if v <= lam[-1]] + [lam[-1]]
        rows = sorted({int(np.argmin(np.abs(lam - v))) for v in wanted})
    hours = cal.total_duration_s / 3600.0
    source = " ".join(str(v) for v in (cal.data, cal.split) if v)
    caption = (f"{cal.n_utterances} utterances, {hours:.3g} h{' of ' + source if source else ''}; "
               f"interpolation error <= {cal.max_interp_error:.1%}; {n} lambdas")
    table = Table(title=f"Frame period by lambda ({cal.range_text()})", caption=caption)
    table.add_column("lambda", justify="right")
    table.add_column("period", justify="right")
    for name in ("p10", "p50", "p90"):
        table.add_column(name, justify="right", style="dim")
    for i in rows:
        cells = [format_period(v) if v is not None else "-" for v in (cal.p10_ms[i], cal.p50_ms[i], cal.p90_ms[i])]
        table.add_row(f"{cal.lambdas[i]:.6g}", format_period(cal.period_ms[i]), *cells)
    return table
