"""Building a calibration: an adaptive lambda grid with a bounded interpolation error."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ofactl.calibrate.counts import _CHUNK_ELEMENTS, AlphaStats, _counts, _total_frames, alpha_stats
from ofactl.calibrate.table import Calibration
from ofactl.cif import LAMBDA_MAX
from ofactl.errors import OfactlError
from ofactl.period import FRAME_MS

#: Last grid point when calibrating up to lambda 2 (the open end).
LAM_END = LAMBDA_MAX - 1e-5


# --------------------------------------------------------------------------- building


def _initial_grid(end: float) -> np.ndarray:
    points = set(np.arange(0.0, end, 0.125).tolist())
    points.add(end)
    for d in (0.1, 0.05, 0.02, 0.01, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5):
        lam = LAMBDA_MAX - d
        if lam < end:
            points.add(lam)
    return np.array(sorted(points))


def build_calibration(
    durations_s: Sequence[float] | np.ndarray | Tensor,
    alphas: Sequence[Tensor] | AlphaStats,
    lam_max: float = LAMBDA_MAX,
    *,
    tolerance: float = 0.02,
    model_sha256: str | None = None,
    data: str | None = None,
    split: str | None = None,
    max_points: int = 1000,
    min_step: float = 1e-7,
) -> Calibration:
    """Measure the lambda <-> frame period table from each utterance's 20 ms alpha.

    The grid starts at steps of 0.125 plus points approaching 2 geometrically
    (the period grows like ``1 / (2 - lam)`` there).  The period is monotone in
    lambda, so evaluating it at the 1/4, 1/2 and 3/4 points of an interval
    bounds the interpolation error on the *whole* interval, not only at those
    points; an interval is halved while that bound exceeds ``tolerance``.  The
    final bound (8 pieces per interval) is stored as ``max_interp_error``.

    Args:
        durations_s: seconds of audio per utterance.
        alphas: each utterance's ``(frame,)`` alpha (valid frames), or :class:`AlphaStats`.
        lam_max: the model's largest training lambda; the grid ends at
            ``min(lam_max, 2 - 1e-5)``.
        tolerance: the interpolation error to reach.
        model_sha256, data, split: recorded in the calibration.
        max_points, min_step: refinement limits (reached only with so few
            utterances that the period is a staircase).

    Raises:
        OfactlError: no audio or no frames to calibrate on.
    """
    stats = alpha_stats(alphas)
    durations = np.asarray(durations_s.tolist() if isinstance(durations_s, Tensor) else durations_s, dtype=np.float64).reshape(-1)
    n_utt = len(stats.sums)
    if len(durations) != n_utt:
        raise ValueError(f"{len(durations)} durations for {n_utt} alphas")
    if not np.all(np.isfinite(durations)) or np.any(durations < 0):
        raise ValueError("durations_s must be finite and >= 0")
    if not 0 < lam_max <= LAMBDA_MAX:
        raise ValueError(f"lam_max must lie in (0, 2], found {lam_max}")
    total_duration_s = math.fsum(durations.tolist())
    if n_utt == 0 or total_duration_s <= 0 or int(stats.n_frames.sum()) == 0:
        raise OfactlError("nothing to calibrate on: no utterance has a 20 ms frame", hint="check the data path and split")
    end = min(float(lam_max), LAM_END)

    cache: dict[float, float] = {}

    def log_period(lams: np.ndarray) -> np.ndarray:
        lams = np.asarray(lams, dtype=np.float64)
        todo = sorted({float(v) for v in lams.tolist()} - cache.keys())
        if todo:
            frames = _total_frames(stats, np.array(todo))
            if np.any(frames == 0):
                bad = todo[int(np.argmax(frames == 0))]
                raise OfactlError(f"at lambda {bad:g} no utterance yields a frame: alpha is zero everywhere",
                                  hint="the model's alpha module never fires; is it trained?")
            for lam, n in zip(todo, frames.tolist()):
                cache[lam] = math.log(1000.0 * total_duration_s / n)
        return np.array([cache[float(v)] for v in lams.tolist()])

    def error_bound(a: np.ndarray, b: np.ndarray, pieces: int) -> np.ndarray:
        """Upper bound of |interpolated / true period - 1| on each interval [a, b].

        The true log period is non-decreasing, so on a piece [u, v] between two
        evaluated points it lies in [T(u), T(v)] while the interpolant lies in
        [I(u), I(v)]: the error is at most max(I(v) - T(u), T(v) - I(u)).
        """
        fractions = np.linspace(0.0, 1.0, pieces + 1)
        la, lb = log_period(a), log_period(b)
        points = a[:, None] + (b - a)[:, None] * fractions[None, :]
        truth = log_period(points[:, 1:-1].ravel()).reshape(len(a), pieces - 1)
        truth = np.concatenate([la[:, None], truth, lb[:, None]], axis=1)
        interp = la[:, None] + (lb - la)[:, None] * fractions[None, :]
        gap = np.maximum(interp[:, 1:] - truth[:, :-1], truth[:, 1:] - interp[:, :-1]).max(axis=1)
        return np.expm1(np.maximum(gap, 0.0))  # expm1(d) >= |expm1(-d)|: the larger side

    grid = set(_initial_grid(end).tolist())
    pending = sorted(grid)
    pending_pairs = list(zip(pending[:-1], pending[1:]))
    while pending_pairs and len(grid) < max_points:
        a = np.array([p[0] for p in pending_pairs])
        b = np.array([p[1] for p in pending_pairs])
        bad = (error_bound(a, b, 4) > tolerance) & ((b - a) / 2 >= min_step)
        pending_pairs = []
        for lo, hi in zip(a[bad].tolist(), b[bad].tolist()):
            mid = (lo + hi) / 2
            grid.add(mid)
            pending_pairs += [(lo, mid), (mid, hi)]
    lambdas = np.array(sorted(grid))

    # The bound over the whole range (8 pieces per interval), and the open end
    # beyond the last point, where the table answers with its last value.
    max_error = float(error_bound(lambdas[:-1], lambdas[1:], 8).max())
    if end < lam_max:
        beyond = np.array([math.nextafter(LAMBDA_MAX, 0.0)])
        max_error = max(max_error, float(np.expm1(log_period(beyond)[0] - log_period(np.array([end]))[0])))

    # Per-utterance periods (20 ms * T / N) at the grid points.
    p = {q: np.full(len(lambdas), np.nan) for q in (10, 50, 90)}
    step = max(1, _CHUNK_ELEMENTS // max(1, n_utt))
    t_frames = stats.n_frames.to(torch.float64).numpy()[:, None]
    total_frames = np.zeros(len(lambdas), dtype=np.int64)
    for start in range(0, len(lambdas), step):
        lam = torch.as_tensor(lambdas[start:start + step])
        counts = _counts(stats.sums, stats.n_frames, lam).numpy()
        total_frames[start:start + step] = counts.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_utt = np.where(counts > 0, FRAME_MS * t_frames / np.maximum(counts, 1), np.nan)
        has = ~np.all(np.isnan(per_utt), axis=0)
        if has.any():
            values = np.nanpercentile(per_utt[:, has], [10, 50, 90], axis=0)
            for row, q in enumerate((10, 50, 90)):
                p[q][start:start + step][has] = values[row]
    period_ms = 1000.0 * total_duration_s / total_frames
    period_ms = np.maximum.accumulate(period_ms)  # exact already; guards the last ulp

    def col(values: np.ndarray) -> list[float | None]:
        return [float(v) if math.isfinite(v) else None for v in values.tolist()]

    return Calibration(
        lambdas=lambdas.tolist(),
        period_ms=period_ms.tolist(),
        p10_ms=col(p[10]),
        p50_ms=col(p[50]),
        p90_ms=col(p[90]),
        total_frames=total_frames.tolist(),
        n_utterances=n_utt,
        total_duration_s=total_duration_s,
        lam_max=float(lam_max),
        max_interp_error=max_error,
        model_sha256=model_sha256,
        data=None if data is None else str(data),
        split=split,
    )
