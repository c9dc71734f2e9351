"""Calibration: the lambda <-> frame period table of a model on a dataset.

The number of output frames of an utterance at ``lam`` depends on its 20 ms
weights ``alpha`` only, through two sums, ``S = sum_t alpha_t`` and ``T`` (its
number of 20 ms frames).  From :func:`ofactl.cif.modify_alpha`,
``a_t = relu(1 - lam) + (relu(lam) - 2 relu(lam - 1)) alpha_t``, so

    sum_t a_t = (1 - lam) T + lam S    for lam in [0, 1)
    sum_t a_t = (2 - lam) S            for lam in [1, 2)

and the min-one-frame guard divides by ``min(sum_t a_t, 1)``, so
``sum_t alpha_mod_t = max(sum_t a_t, 1)`` (0 when ``sum_t a_t = 0``).  CIF
fires ``N = floor(sum_t alpha_mod_t + FIRE_EPS)`` frames (:func:`ofactl.cif.cif`).
So a whole lambda grid costs one pass of the alpha module over the data, not
one transformer pass per lambda: :func:`frame_counts` (``counts``).

* :func:`measure_calibration` (``measure``) runs the model's 20 ms part over a
  corpus and builds and saves the table.
* :func:`build_calibration` (``build``) picks the grid adaptively, so that interpolating
  ``log(period)`` linearly in lambda errs by less than ``tolerance`` (2%)
  anywhere in ``[0, lam_max)``, and returns a :class:`Calibration`.
* :class:`Calibration` (``table``) is the table (``calibration.json`` in the model
  directory): :meth:`Calibration.lam_for` (period -> lambda, monotone inverse),
  :meth:`Calibration.period_for`, :meth:`Calibration.check` (same weights?).

The lambda that gives one utterance exactly a target number of frames
(exact-rate extraction) is :mod:`ofactl.exact_rate`'s; the CLI's table of a
calibration is :mod:`ofactl.cli.calibration_table`'s.

Periods follow REFERENCE.md: the dataset period is total audio seconds / total
output frames; an utterance's period is ``20 ms * T / N``.
"""

from __future__ import annotations

from ofactl.calibrate.build import LAM_END, build_calibration
from ofactl.calibrate.counts import AlphaStats, alpha_stats, frame_counts
from ofactl.calibrate.measure import CalibrationRun, measure_calibration
from ofactl.calibrate.table import CALIBRATION_FILE, CALIBRATION_FORMAT_VERSION, Calibration
from ofactl.period import format_period
from ofactl.period import FRAME_MS

__all__ = [
    "FRAME_MS",
    "CALIBRATION_FILE",
    "CALIBRATION_FORMAT_VERSION",
    "LAM_END",
    "AlphaStats",
    "alpha_stats",
    "frame_counts",
    "Calibration",
    "CalibrationRun",
    "build_calibration",
    "format_period",
    "measure_calibration",
]
