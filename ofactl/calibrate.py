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
one transformer pass per lambda: :func:`frame_counts`.

* :func:`build_calibration` picks the grid adaptively, so that interpolating
  ``log(period)`` linearly in lambda errs by less than ``tolerance`` (2%)
  anywhere in ``[0, lam_max)``, and returns a :class:`Calibration`.
* :class:`Calibration` is the table (``calibration.json`` in the model
  directory): :meth:`Calibration.lam_for` (period -> lambda, monotone inverse),
  :meth:`Calibration.period_for`, :meth:`Calibration.check` (same weights?).

The lambda that gives one utterance exactly a target number of frames
(exact-rate extraction) is :mod:`ofactl.exact_rate`'s; the CLI's table of a
calibration is :mod:`ofactl.cli.calibration_table`'s.

Periods follow REFERENCE.md: the dataset period is total audio seconds / total
output frames; an utterance's period is ``20 ms * T / N``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ofactl import __version__
from ofactl.cif import FIRE_EPS, LAMBDA_MAX
from ofactl.errors import OfactlError
from ofactl.period import FRAME_MS, FramePeriod

__all__ = [
    "FRAME_MS",
    "CALIBRATION_FILE",
    "AlphaStats",
    "alpha_stats",
    "frame_counts",
    "Calibration",
    "build_calibration",
    "format_period",
]

CALIBRATION_FILE = "calibration.json"  # == ofactl.checkpoint.CALIBRATION_FILE
CALIBRATION_FORMAT_VERSION = 1
#: Last grid point when calibrating up to lambda 2 (the open end).
LAM_END = LAMBDA_MAX - 1e-5
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- frame counts


class AlphaStats(NamedTuple):
    """What frame counts depend on: per utterance ``sums`` (float64, ``sum_t alpha_t``)
    and ``n_frames`` (int64, ``T``), both ``(utterance,)``.

    Accumulate these (not the alphas) over a large dataset: 16 bytes per utterance.
    """

    sums: Tensor
    n_frames: Tensor

    @staticmethod
    def cat(parts: Sequence[AlphaStats]) -> AlphaStats:
        """Concatenate per-batch stats in order."""
        if not parts:
            return AlphaStats(torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
        return AlphaStats(torch.cat([p.sums for p in parts]), torch.cat([p.n_frames for p in parts]))


def alpha_stats(alphas: Sequence[Tensor] | Tensor, lengths: Tensor | None = None) -> AlphaStats:
    """Per-utterance ``sum_t alpha_t`` (float64) and ``T``.

    Args:
        alphas: a list of ``(frame,)`` tensors (valid frames only), or a padded
            ``(batch, frame)`` tensor with ``lengths``.
        lengths: ``(batch,)`` valid frames for a padded tensor (None: all valid).

    Raises:
        ValueError: a wrong shape, or alpha outside ``[0, 1]``.
    """
    if isinstance(alphas, AlphaStats):
        return alphas
    if isinstance(alphas, Tensor) and alphas.ndim == 2:
        batch, max_len = alphas.shape
        if lengths is None:
            lengths = torch.full((batch,), max_len, dtype=torch.long)
        lengths = lengths.to(device=alphas.device, dtype=torch.long)
        if lengths.shape != (batch,):
            raise ValueError(f"expected lengths of shape ({batch},), found {tuple(lengths.shape)}")
        valid = torch.arange(max_len, device=alphas.device)[None, :] < lengths[:, None]
        a64 = alphas.detach().to(torch.float64).masked_fill(~valid, 0.0)
        _check_alpha_range(a64[valid])
        return AlphaStats(a64.sum(dim=1).cpu(), lengths.cpu())
    sums, counts = [], []
    for index, alpha in enumerate(alphas):
        if not isinstance(alpha, Tensor) or alpha.ndim != 1:
            shape = tuple(alpha.shape) if isinstance(alpha, Tensor) else type(alpha).__name__
            raise ValueError(f"expected alpha {index} of shape (frame,), found {shape}")
        a64 = alpha.detach().to(torch.float64)
        _check_alpha_range(a64)
        sums.append(float(a64.sum()))
        counts.append(alpha.shape[0])
    return AlphaStats(torch.tensor(sums, dtype=torch.float64), torch.tensor(counts, dtype=torch.long))


def _check_alpha_range(a64: Tensor) -> None:
    if a64.numel() and (float(a64.min()) < 0.0 or float(a64.max()) > 1.0 + 1e-6):
        raise ValueError(f"alpha must lie in [0, 1], found [{float(a64.min()):.6g}, {float(a64.max()):.6g}]")


def _as_lams(lams: Tensor | Sequence[float] | float) -> Tensor:
    lam = torch.as_tensor(lams, dtype=torch.float64).reshape(-1)
    if lam.numel() and not bool(((lam >= 0) & (lam < LAMBDA_MAX)).all()):
        raise ValueError(f"lambdas must lie in [0, 2), found [{float(lam.min())}, {float(lam.max())}]")
    return lam


def _counts(sums: Tensor, n_frames: Tensor, lam: Tensor) -> Tensor:
    """``(U, G)`` int64 frame counts from the closed-form sum (see the module docstring)."""
    const = torch.relu(1 - lam)[None, :]
    scale = (torch.relu(lam) - 2 * torch.relu(lam - 1))[None, :]
    total = const * n_frames.to(torch.float64)[:, None] + scale * sums[:, None]
    fired = torch.floor(torch.clamp(total, min=1.0) + FIRE_EPS).to(torch.long)
    return torch.where(total > 0, fired, torch.zeros_like(fired))


def frame_counts(alphas: Sequence[Tensor] | AlphaStats, lams: Tensor | Sequence[float]) -> Tensor:
    """Output frames of every utterance at every lambda, without running CIF.

    Equal to ``cif(x, modify_alpha(alpha, lam)).lengths`` (up to float rounding
    in the last ulp of a sum that lands on an integer minus ``FIRE_EPS``).

    Args:
        alphas: one ``(frame,)`` tensor of 20 ms weights per utterance (valid
            frames only), or their :class:`AlphaStats`.
        lams: ``(G,)`` lambdas in ``[0, 2)``.

    Returns:
        ``(U, G)`` int64.
    """
    stats = alpha_stats(alphas)
    return _counts(stats.sums, stats.n_frames, _as_lams(lams))


def _total_frames(stats: AlphaStats, lams: np.ndarray) -> np.ndarray:
    """``(G,)`` total frames over the dataset, in chunks of lambdas."""
    out = np.zeros(len(lams), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(stats.sums)))
    for start in range(0, len(lams), step):
        lam = torch.as_tensor(lams[start:start + step], dtype=torch.float64)
        out[start:start + step] = _counts(stats.sums, stats.n_frames, lam).sum(dim=0).numpy()
    return out


# --------------------------------------------------------------------------- the table


def format_period(ms: float) -> str:
    """Three significant digits, ms below one second: ``"20.3ms"``, ``"960ms"``, ``"1.24s"``."""
    if not math.isfinite(ms):
        return "-"
    if abs(ms) < 999.5:
        return f"{float(f'{ms:.3g}'):g}ms"
    return f"{float(f'{ms / 1000:.3g}'):g}s"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Calibration:
    """The frame period of a model on a dataset, per lambda, and its inverse.

    Attributes:
        lambdas: the grid, strictly increasing in ``[0, 2)``.
        period_ms: dataset period per lambda (total audio s / total output
            frames), non-decreasing.
        p10_ms, p50_ms, p90_ms: percentiles of the utterances' own periods
            (``20 ms * T / N``) per lambda; None where no utterance has a frame.
        total_frames: output frames over the dataset per lambda.
        n_utterances, total_duration_s: the data measured.
        lam_max: the largest lambda calibrated for (the model's training range).
        max_interp_error: an upper bound of the relative error of log-linear
            interpolation anywhere in ``[0, lam_max)`` (from the midpoints and
            more of every interval, and the monotonicity of the period); below
            the builder's ``tolerance`` unless the data are too few for a smooth
            curve (the period is a staircase with steps of one frame).
        model_sha256: the weights measured (see :meth:`check`).
        data, split: what was measured (free text).
    """

    lambdas: list[float]
    period_ms: list[float]
    p10_ms: list[float | None]
    p50_ms: list[float | None]
    p90_ms: list[float | None]
    total_frames: list[int]
    n_utterances: int
    total_duration_s: float
    lam_max: float = LAMBDA_MAX
    max_interp_error: float = 0.0
    model_sha256: str | None = None
    data: str | None = None
    split: str | None = None
    created_at: str = field(default_factory=_now)
    ofactl_version: str = __version__
    format_version: int = CALIBRATION_FORMAT_VERSION

    def __post_init__(self) -> None:
        self.lambdas = [float(v) for v in self.lambdas]
        self.period_ms = [float(v) for v in self.period_ms]
        self.p10_ms, self.p50_ms, self.p90_ms = ([_opt_float(v) for v in col] for col in (self.p10_ms, self.p50_ms, self.p90_ms))
        self.total_frames = [int(v) for v in self.total_frames]
        n = len(self.lambdas)
        if n < 2:
            raise ValueError(f"a calibration needs at least 2 lambdas, found {n}")
        for name in ("period_ms", "p10_ms", "p50_ms", "p90_ms", "total_frames"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} lambdas")
        lam = np.asarray(self.lambdas)
        if not (lam[0] >= 0 and lam[-1] < LAMBDA_MAX and np.all(np.diff(lam) > 0)):
            raise ValueError("lambdas must increase strictly within [0, 2)")
        per = np.asarray(self.period_ms)
        if not (np.all(np.isfinite(per)) and np.all(per > 0) and np.all(np.diff(per) >= 0)):
            raise ValueError("period_ms must be positive, finite and non-decreasing in lambda")
        if not 0 < self.lam_max <= LAMBDA_MAX or lam[-1] > self.lam_max:
            raise ValueError(f"lam_max must lie in (lambdas[-1], 2], found {self.lam_max}")
        self._lam = lam
        self._log_period = np.log(per)

    # -- queries
    @property
    def min_period_ms(self) -> float:
        return self.period_ms[0]

    @property
    def max_period_ms(self) -> float:
        return self.period_ms[-1]

    def range_text(self) -> str:
        """``"20.3ms–1.24s"``."""
        return f"{format_period(self.min_period_ms)}–{format_period(self.max_period_ms)}"

    def lam_for(self, period: FramePeriod | float, tolerance: float = 0.02) -> float:
        """The smallest lambda whose (interpolated) dataset period reaches ``period``.

        Args:
            period: a :class:`FramePeriod`, or milliseconds.
            tolerance: periods up to this fraction beyond either end of the
                table are accepted and give the end's lambda (the table itself
                is only that accurate).  Below 20 ms is always refused.

        Raises:
            OfactlError: the period is outside the calibrated range (the
                message names it).
        """
        ms = period.ms if isinstance(period, FramePeriod) else FramePeriod(period).ms
        lo, hi = self.min_period_ms, self.max_period_ms
        lower = lo if lo <= FRAME_MS else max(FRAME_MS, lo / (1 + tolerance))
        upper = hi * (1 + tolerance)
        if not lower <= ms <= upper:
            hint = "choose a period in that range"
            if ms > upper and self.lam_max < LAMBDA_MAX:
                hint += f" (the model was calibrated up to lambda {self.lam_max:g})"
            raise OfactlError(f"{FramePeriod(ms)} is outside the calibrated range {self.range_text()} of this model", hint=hint)
        lp = min(max(math.log(ms), self._log_period[0]), self._log_period[-1])
        i = int(np.searchsorted(self._log_period, lp, side="left"))  # first point reaching lp
        if i == 0:
            return self.lambdas[0]
        if self._log_period[i] == lp:
            return self.lambdas[i]
        lp0, lp1 = self._log_period[i - 1], self._log_period[i]
        lam0, lam1 = self.lambdas[i - 1], self.lambdas[i]
        return float(lam0 + (lp - lp0) / (lp1 - lp0) * (lam1 - lam0))

    def period_for(self, lam: float) -> FramePeriod:
        """The dataset period at ``lam`` (log-linear interpolation of the table).

        Raises:
            OfactlError: ``lam`` outside ``[0, lam_max]`` (and ``[0, 2)``).
        """
        lam = float(lam)
        if not (0.0 <= lam < LAMBDA_MAX and lam <= self.lam_max and lam >= self.lambdas[0]):
            raise OfactlError(f"lambda {lam:g} is outside the calibrated range {self.lambdas[0]:g}–{self.lam_max:g}")
        if lam >= self.lambdas[-1]:
            return FramePeriod(self.max_period_ms)
        return FramePeriod(float(np.exp(np.interp(lam, self._lam, self._log_period))))

    def check(self, model_sha256: str | None) -> None:
        """Refuse a calibration measured on other weights.

        Raises:
            OfactlError: both hashes are known and differ.
        """
        if self.model_sha256 and model_sha256 and self.model_sha256 != model_sha256:
            raise OfactlError(
                f"calibration was made for other weights (sha256 {self.model_sha256[:12]}..., "
                f"this model {model_sha256[:12]}...): run ofactl calibrate again",
                hint="`ofactl calibrate DATA` measures the lambda <-> period table of this model",
            )

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; adds the summaries ``lambda_range`` and ``period_range_ms``."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["lambda_range"] = [self.lambdas[0], self.lambdas[-1]]
        data["period_range_ms"] = [self.min_period_ms, self.max_period_ms]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        names = {f.name for f in dataclasses.fields(cls)}
        version = int(data.get("format_version", 1))
        if version > CALIBRATION_FORMAT_VERSION:
            raise ValueError(f"format_version {version} is newer than this ofactl reads ({CALIBRATION_FORMAT_VERSION})")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        """Write ``calibration.json`` into the model directory, atomically; returns its path."""
        from ofactl.atomic import atomic_write as _atomic_write

        directory = Path(model_dir)
        if directory.is_file():
            directory = directory.parent
        if not directory.is_dir():
            raise OfactlError(f"cannot save the calibration: model directory {directory} does not exist")
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        path = directory / CALIBRATION_FILE
        _atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        return path

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> Calibration:
        """Read ``calibration.json`` from a model directory (or the file itself).

        Raises:
            OfactlError: not calibrated, or the file is unreadable or invalid.
        """
        path = Path(model_dir)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        elif path.name != CALIBRATION_FILE and path.suffix != ".json":
            path = path.parent / CALIBRATION_FILE  # e.g. .../model.pt
        redo = "run `ofactl calibrate DATA` again"
        if not path.is_file():
            raise OfactlError(f"model {path.parent} is not calibrated (no {CALIBRATION_FILE})",
                              hint="run `ofactl calibrate DATA` to measure its lambda <-> frame period table")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise OfactlError(f"{path} is unreadable ({type(err).__name__}: {str(err).splitlines()[0]})", hint=redo) from None
        if not isinstance(data, dict):
            raise OfactlError(f"{path} is not a calibration (not a JSON object)", hint=redo)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise OfactlError(f"{path} is not a valid calibration: {err}", hint=redo) from None


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
