"""Trade-off figures and tables from the results table, and the calibration curve.

The package: :mod:`~ofactl.plot.styles` (colours, known tasks and metrics),
:mod:`~ofactl.plot.data` (reading, cleaning, kinds of model, intervals, the Pareto
front), :mod:`~ofactl.plot.figures` and :mod:`~ofactl.plot.tables`.

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
* **Kinds of model.**  A model is a *previous work* when one of its rows has
  the variant ``previous``; a *baseline* when one has the variant
  ``baseline`` (rows added by hand without a variant get one from their note,
  see :func:`ofactl.results.read_results`), or when its rows (task ``profile`` aside) have one frame
  period per task (a fixed-rate model cannot draw a line; its measured
  period may differ a little from task to task).  Every other model is an
  *OFA model*, drawn as a line through its periods.  Baselines are drawn as
  ``x``, previous works as ``+``.  Rows of a learned lambda (``probe
  --learn-lambda``, variant ``learned-...``) are drawn apart from their
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

from ofactl.plot.data import (
    classify_models,
    load_results,
    pareto_front,
    prepare_results,
)
from ofactl.plot.figures import (
    check_figure_path,
    plot_calibration,
    plot_results,
    save_figure,
)
from ofactl.plot.styles import FIGURE_SUFFIXES, METRICS, OKABE_ITO, TASKS
from ofactl.plot.tables import pivot_results, render_pivot

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
