"""The calibration table (calibration.json in a model directory): lambda <-> frame period."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ofactl import __version__
from ofactl.cif import LAMBDA_MAX
from ofactl.errors import OfactlError
from ofactl.period import FRAME_MS, FramePeriod, format_period

CALIBRATION_FILE = "calibration.json"  # == ofactl.checkpoint.CALIBRATION_FILE
CALIBRATION_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- the table


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
