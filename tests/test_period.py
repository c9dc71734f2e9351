"""FramePeriod: parsing, printing, validation, ordering, and the typer option parser."""

from __future__ import annotations

import dataclasses
import math

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from ofactl.errors import OfactlError
from ofactl.period import FramePeriod, parse_period_option


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90ms", 90.0),
        ("90 ms", 90.0),
        ("  90MS\n", 90.0),
        ("0.09s", 90.0),
        ("0.09 s", 90.0),
        ("\t0.09 S ", 90.0),
        ("1.5s", 1500.0),
        ("0.07s", 70.0),  # 0.07 * 1000 in float arithmetic is 70.00000000000001
        ("12.5ms", 12.5),
        (".5s", 500.0),
        ("2e1ms", 20.0),
        ("+20ms", 20.0),
    ],
)
def test_parse_examples(text: str, ms: float) -> None:
    assert FramePeriod.parse(text).ms == ms


def test_bare_number_suggests_milliseconds() -> None:
    with pytest.raises(OfactlError) as info:
        FramePeriod.parse("90")
    assert "did you mean '90ms'?" in info.value.message


def test_small_bare_number_suggests_seconds_first() -> None:
    with pytest.raises(OfactlError) as info:
        FramePeriod.parse("0.09")
    assert "did you mean '0.09s' or '90ms'?" in info.value.message


@pytest.mark.parametrize(
    "text",
    ["-5ms", "0ms", "0s", "-0.1s", "nanms", "inf ms", "infinity s", "abc", "", "   ", "90 hz", "ms", "90 m s", "9 0ms", "1e400s", "1e-400ms", "-3", "nan"],
)
def test_parse_rejects_with_one_line(text: str) -> None:
    with pytest.raises(OfactlError) as info:
        FramePeriod.parse(text)
    assert "\n" not in str(info.value)
    assert info.value.message


def test_parse_rejects_non_text() -> None:
    with pytest.raises(OfactlError):
        FramePeriod.parse(90)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, "90", True, None])
def test_constructor_validates(bad: object) -> None:
    with pytest.raises(OfactlError):
        FramePeriod(bad)  # type: ignore[arg-type]


def test_constructor_converts_int_to_float() -> None:
    period = FramePeriod(90)
    assert period.ms == 90.0 and type(period.ms) is float
    assert period == FramePeriod(90.0)


def test_str_is_compact() -> None:
    assert str(FramePeriod(90.0)) == "90ms"
    assert str(FramePeriod(12.5)) == "12.5ms"
    assert str(FramePeriod(0.1)) == "0.1ms"


def test_seconds_and_from_seconds() -> None:
    assert FramePeriod(90.0).seconds == 0.09
    assert FramePeriod.from_seconds(0.07) == FramePeriod(70.0)
    with pytest.raises(OfactlError):
        FramePeriod.from_seconds(-1.0)


def test_ordering_equality_hash_and_immutability() -> None:
    periods = [FramePeriod(960.0), FramePeriod(20.0), FramePeriod.parse("0.09s")]
    assert sorted(periods) == [FramePeriod(20.0), FramePeriod(90.0), FramePeriod(960.0)]
    assert FramePeriod(20.0) < FramePeriod(90.0) <= FramePeriod(90.0)
    assert FramePeriod.parse("90ms") == FramePeriod.parse("0.09s")
    assert len({FramePeriod(90.0), FramePeriod.parse("90 ms")}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        FramePeriod(90.0).ms = 20.0  # type: ignore[misc]


@given(st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_str_round_trips_exactly(ms: float) -> None:
    period = FramePeriod(ms)
    again = FramePeriod.parse(str(period))
    assert again == period
    assert again.ms == ms


@given(st.integers(min_value=1, max_value=10**9))
def test_seconds_with_millisecond_digits_are_exact(ms: int) -> None:
    text = f"{ms // 1000}.{ms % 1000:03d}s"
    assert FramePeriod.parse(text).ms == float(ms)


@given(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), st.sampled_from(["ms", " ms", "MS", "s", " S"]))
def test_parse_is_monotone_in_the_number(value: float, unit: str) -> None:
    smaller = FramePeriod.parse(f"{value!r}{unit}")
    larger = FramePeriod.parse(f"{value * 2!r}{unit}")
    assert smaller < larger


def test_parse_period_option() -> None:
    assert parse_period_option(None) is None
    assert parse_period_option("0.09s") == FramePeriod(90.0)
    assert parse_period_option(FramePeriod(20.0)) == FramePeriod(20.0)
    with pytest.raises(typer.BadParameter, match="did you mean '90ms'"):
        parse_period_option("90")


def test_operating_point_is_validated_once_for_every_command():
    """Issue 16 #2: one value checks both/neither, exact without a period, the 20 ms floor and the lambda range."""
    from ofactl.period import FRAME_MS, OperatingPoint

    assert OperatingPoint.of("90ms").period == FramePeriod(90) and OperatingPoint.of(lam=0).lam == 0.0
    assert [OperatingPoint.of("90ms").tag, OperatingPoint.of("90ms", exact=True).tag, OperatingPoint.of(lam=1.25).tag] \
        == ["90ms", "90ms-exact", "lam1.25"]
    assert OperatingPoint.of(f"{FRAME_MS:g}ms").period.ms == 20.0
    for kwargs, message in [({}, "give exactly one of --period and --lambda"),
                            ({"period": "90ms", "lam": 1.0}, "give exactly one of --period and --lambda"),
                            ({"lam": 1.0, "exact": True}, "--exact needs --period"),
                            ({"period": "19.9ms"}, "19.9ms is below 20ms, the CNN's frame period"),
                            ({"lam": 2.0}, "--lambda must lie in [0, 2), found 2.0"),
                            ({"lam": -0.1}, "--lambda must lie in [0, 2), found -0.1")]:
        with pytest.raises(OfactlError) as err:
            OperatingPoint.of(**kwargs)
        assert err.value.message.startswith(message), (kwargs, err.value.message)

    class Calibrated:
        def lam_for(self, period):
            return period.ms / 100

    assert OperatingPoint.of("90ms").resolve(Calibrated()) == 0.9
    assert OperatingPoint.of(lam=1.5).resolve(Calibrated()) == 1.5
    assert OperatingPoint.of("90ms", exact=True).resolve(Calibrated()) is None  # solved per utterance
    # exact mode's frame count: round(duration / period), halves up, clipped to [1, CNN frames]
    exact = OperatingPoint.of("90ms", exact=True)
    assert [exact.frames_for(d, 500) for d in (0.045, 0.0449, 0.135, 1.0, 100.0)] == [1, 1, 2, 11, 500]
    assert exact.frames_for(1.0, 0) == 0
    with pytest.raises(ValueError):
        OperatingPoint.of(lam=1.0).frames_for(1.0, 50)
