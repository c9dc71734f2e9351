"""Frame periods: ``"90ms"`` / ``"0.09s"`` <-> a value in milliseconds.

A frame period is the time between two output frames of a (model, lambda,
data) triple.  On the CLI it is always written with a unit (``--period 90ms``
or ``--period 0.09s``); a bare number is refused, because ``90`` could be
read as 90 ms, 90 s or 90 frames per second.

:class:`FramePeriod` is an immutable, ordered value::

    >>> p = FramePeriod.parse("0.09 s")
    >>> p.ms, p.seconds, str(p)
    (90.0, 0.09, '90ms')
    >>> FramePeriod.parse(str(p)) == p
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ofactl.errors import OfactlError

__all__ = ["check_lambda", "exact_target_frames", "format_period", "FRAME_MS", "HOP_SAMPLES", "LAMBDA_MAX", "SAMPLE_RATE", "MIN_PERIOD_MS", "FramePeriod", "OperatingPoint", "parse_period_option"]

#: Number, optional whitespace, optional unit word (anything alphabetic, checked below).
_PERIOD_RE = re.compile(
    r"""^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|[+-]?(?:nan|infinity|inf))
        \s*(?P<unit>[^\d\s.+-][^\s]*)?$""",
    re.IGNORECASE | re.VERBOSE,
)

_UNIT_SCALE_TO_MS = {"ms": Decimal(1), "s": Decimal(1000)}

_FORMAT_HINT = "write the period with a unit, e.g. '90ms' or '0.09s'"

#: Integral millisecond values below this are printed without a decimal point ("90ms").
_MAX_INTEGRAL_PRINT_MS = 1e15


def _check_ms(ms: Any, what: str) -> float:
    """Validate a period in milliseconds and return it as a float."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        raise OfactlError(
            f"frame period must be a number of milliseconds, got {type(ms).__name__} {ms!r}",
            hint="use FramePeriod(90.0) or FramePeriod.parse('90ms')",
        )
    value = float(ms)
    if math.isnan(value) or math.isinf(value):
        raise OfactlError(f"frame period must be finite, got {what}", hint=_FORMAT_HINT)
    if value <= 0.0:
        raise OfactlError(f"frame period must be positive, got {what}", hint=_FORMAT_HINT)
    return value


@dataclass(frozen=True, order=True)
class FramePeriod:
    """A frame period, stored in milliseconds.

    Args:
        ms: the period in milliseconds; a positive finite number.

    Raises:
        OfactlError: if ``ms`` is not a positive finite number.

    Instances are hashable and ordered by duration (``FramePeriod(20.0) <
    FramePeriod(90.0)``).  ``str(p)`` gives a form that :meth:`parse` reads back
    to an equal value.
    """

    ms: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "ms", _check_ms(self.ms, repr(self.ms) + " ms"))

    @property
    def seconds(self) -> float:
        """The period in seconds."""
        return self.ms / 1000.0

    @classmethod
    def from_seconds(cls, seconds: float) -> FramePeriod:
        """Build a period from a value in seconds (``FramePeriod.from_seconds(0.09)``)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise OfactlError(f"frame period must be a number of seconds, got {seconds!r}")
        try:
            ms = float(Decimal(repr(float(seconds))) * 1000)
        except (InvalidOperation, OverflowError):
            ms = float(seconds) * 1000.0  # nan / inf: let the validation name it
        return cls(ms)

    @classmethod
    def parse(cls, text: str) -> FramePeriod:
        """Parse ``"90ms"``, ``"90 ms"``, ``"0.09s"``, ``"1.5 S"`` ... into a period.

        Units are ``ms`` or ``s`` (case-insensitive); whitespace around the
        value and between number and unit is ignored.  Seconds are converted
        with exact decimal arithmetic, so ``"0.07s"`` is exactly ``70.0`` ms.

        Raises:
            OfactlError: for a bare number (with a "did you mean" suggestion),
                an unknown unit, a non-positive or non-finite value, or text
                that is not a period at all.
        """
        if not isinstance(text, str):
            raise OfactlError(f"frame period must be text such as '90ms', got {type(text).__name__} {text!r}")
        stripped = text.strip()
        match = _PERIOD_RE.match(stripped)
        if not match:
            raise OfactlError(f"'{text}' is not a frame period", hint=_FORMAT_HINT)
        number_text, unit_text = match.group("number"), match.group("unit")
        number = Decimal(number_text)  # accepts nan / inf spellings too
        if unit_text is None:
            raise cls._bare_number_error(text, number_text, number)
        unit = unit_text.lower()
        if unit not in _UNIT_SCALE_TO_MS:
            raise OfactlError(f"unknown unit '{unit_text}' in frame period '{text}'", hint="use 'ms' or 's', e.g. '90ms' or '0.09s'")
        if not number.is_finite():
            raise OfactlError(f"frame period must be finite, got '{text}'", hint=_FORMAT_HINT)
        ms = float(number * _UNIT_SCALE_TO_MS[unit])
        if number > 0 and (ms == 0.0 or math.isinf(ms)):
            size = "small" if ms == 0.0 else "large"
            raise OfactlError(f"frame period '{text}' is too {size} to represent in milliseconds", hint=_FORMAT_HINT)
        return cls(_check_ms(ms, f"'{text}'"))

    @staticmethod
    def _bare_number_error(text: str, number_text: str, number: Decimal) -> OfactlError:
        """The error for a number without a unit, with the most likely reading(s)."""
        if not number.is_finite() or number <= 0:
            return OfactlError(f"frame period must be a positive duration with a unit, got '{text}'", hint=_FORMAT_HINT)
        as_ms = f"{number_text}ms"
        if number < 5:
            # Below 5 the number is almost certainly seconds (periods start at 20 ms).
            in_ms = float(number * 1000)
            suggestion = f"did you mean '{number_text}s' or '{FramePeriod(in_ms)}'?" if math.isfinite(in_ms) and in_ms > 0 else f"did you mean '{number_text}s'?"
        else:
            suggestion = f"did you mean '{as_ms}'?"
        return OfactlError(f"frame period '{text.strip()}' has no unit; {suggestion}", hint=_FORMAT_HINT)

    def __str__(self) -> str:
        """Compact exact form in milliseconds: ``"90ms"``, ``"12.5ms"``, ``"0.1ms"``."""
        if self.ms.is_integer() and self.ms < _MAX_INTEGRAL_PRINT_MS:
            return f"{int(self.ms)}ms"
        return f"{self.ms!r}ms"  # repr(float) is the shortest text that reads back exactly


def parse_period_option(value: str | FramePeriod | None) -> FramePeriod | None:
    """Parser for typer options: ``typer.Option("--period", parser=parse_period_option)``.

    None and :class:`FramePeriod` values pass through unchanged.

    Raises:
        typer.BadParameter: for an invalid period, so typer reports it against
            the option it came from ("Invalid value for '--period': ...",
            exit code 2).
    """
    if value is None or isinstance(value, FramePeriod):
        return value
    try:
        return FramePeriod.parse(value)
    except OfactlError as err:
        import typer  # only the CLI needs typer; keep the library import light

        raise typer.BadParameter(str(err)) from None


#: The time grid every model shares: audio at 16 kHz, one CNN frame per 320 samples (20 ms).  The one
#: definition; everything else imports these.
SAMPLE_RATE = 16_000
HOP_SAMPLES = 320
#: The CNN's frame period: no operating point is finer.
FRAME_MS = 1000.0 * HOP_SAMPLES / SAMPLE_RATE
MIN_PERIOD_MS = FRAME_MS
#: lambda lies in [0, LAMBDA_MAX): 0 keeps every 20 ms frame, towards 2 one frame per utterance.
LAMBDA_MAX = 2.0


def format_period(ms: float) -> str:
    """A period for people (tables, ranges): three significant digits, ms below one second: ``"20.3ms"``, ``"960ms"``, ``"1.24s"``."""
    if not math.isfinite(ms):
        return "-"
    if abs(ms) < 999.5:
        return f"{float(f'{ms:.3g}'):g}ms"
    return f"{float(f'{ms / 1000:.3g}'):g}s"


def exact_target_frames(duration_s: float, period_ms: float, n_frames_20ms: int) -> int:
    """Frames that give an utterance the period ``period_ms``: ``round(duration_s * 1000 / period_ms)``
    (halves up), clipped to ``[1, n_frames_20ms]``; 0 when the utterance has no 20 ms frame."""
    if n_frames_20ms <= 0:
        return 0
    if not period_ms > 0:
        raise ValueError(f"period_ms must be positive, found {period_ms}")
    target = math.floor(duration_s * 1000.0 / period_ms + 0.5)
    return int(min(max(target, 1), n_frames_20ms))


def check_lambda(lam: float, name: str = "--lambda") -> float:
    """``lam`` as a float when it lies in ``[0, LAMBDA_MAX)``; else one error line naming ``name``."""
    if not 0.0 <= float(lam) < LAMBDA_MAX:
        raise OfactlError(f"{name} must lie in [0, 2), found {lam}")
    return float(lam)


@dataclass(frozen=True)
class OperatingPoint:
    """Where a model runs: a target frame period (through the calibration, or ``exact``: each utterance cut to
    ``round(duration / period)`` frames), or a lambda directly.  Validated once, here, for every command and
    library function::

        >>> OperatingPoint.of("90ms").tag, OperatingPoint.of(lam=1.2).tag
        ('90ms', 'lam1.2')

    Raises:
        OfactlError: both or neither of period and lambda, ``exact`` without a period, a period below 20 ms, or a
            lambda outside [0, 2).
    """

    period: FramePeriod | None = None
    lam: float | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        if (self.period is None) == (self.lam is None):
            raise OfactlError("give exactly one of --period and --lambda")
        if self.exact and self.period is None:
            raise OfactlError("--exact needs --period (the frame period each utterance is cut to)")
        if self.period is not None and self.period.ms < MIN_PERIOD_MS:
            raise OfactlError(f"{self.period} is below 20ms, the CNN's frame period", hint="ask for 20ms or more")
        if self.lam is not None:
            check_lambda(self.lam)

    @classmethod
    def of(cls, period: FramePeriod | str | None = None, lam: float | None = None, exact: bool = False) -> OperatingPoint:
        """From command-line values: a period text (``"90ms"``) or :class:`FramePeriod`, a lambda number."""
        p = FramePeriod.parse(period) if isinstance(period, str) else period
        return cls(p, None if lam is None else float(lam), bool(exact))

    def resolve(self, model) -> float | None:
        """The lambda to run ``model`` at (None in exact mode: solved per utterance); a period goes through the
        model's calibration (``model.lam_for``)."""
        if self.exact:
            return None
        return self.lam if self.lam is not None else float(model.lam_for(self.period))

    def frames_for(self, duration_s: float, n_frames_20ms: int) -> int:
        """The frames an utterance of ``duration_s`` seconds (``n_frames_20ms`` CNN frames) gets at this period in
        exact mode: :func:`exact_target_frames`."""
        if self.period is None:
            raise ValueError("a lambda has no frame count of its own; give a period")
        return exact_target_frames(duration_s, self.period.ms, n_frames_20ms)

    @property
    def tag(self) -> str:
        """A short name for file names: ``90ms``, ``90ms-exact`` or ``lam1.2``."""
        if self.period is None:
            return f"lam{self.lam:g}"
        return f"{self.period}{'-exact' if self.exact else ''}"
