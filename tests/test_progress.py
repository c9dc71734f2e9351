"""Progress in a log (issue 17 #12): plain lines, throttled, with an ETA; nothing when quiet."""

from __future__ import annotations

import io

import pytest

from ofactl.progress import ProgressLine, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_lines_are_throttled_and_carry_an_eta() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressLine("pretrain", stream=out, terminal=False, interval=30, clock=clock) as p:
        p.update(0, 600)
        for step in range(1, 601):
            clock.now += 0.5  # 0.5 s per step: 300 s in all
            p.update(step, 600, info=f"loss {1 / step:.3f}")
    lines = _lines(out)
    assert lines[0] == "pretrain: 0/600 (0%) 0s elapsed"
    assert lines[1] == "pretrain: 60/600 (10%) 30s elapsed, about 4m 30s left; loss 0.017"
    assert lines[-1] == "pretrain: 600/600 (100%) 5m 00s elapsed; loss 0.002"
    assert len(lines) == 1 + 300 // 30  # one line every 30 s, the last one at the end


def test_a_resumed_job_estimates_from_this_run_s_rate() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressLine("extracting", stream=out, terminal=False, interval=10, clock=clock) as p:
        p.update(500, 1000)  # half was done by an earlier run
        clock.now += 10
        p.update(600, 1000)
    assert _lines(out)[-1] == "extracting: 600/1000 (60%) 10s elapsed, about 40s left"


def test_an_interrupted_job_prints_where_it_stopped() -> None:
    clock, out = Clock(), io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with ProgressLine("calibrating", stream=out, terminal=False, interval=60, clock=clock) as p:
            p.update(1, 10)
            clock.now += 5
            p.update(3, 10)
            raise KeyboardInterrupt
    assert _lines(out) == ["calibrating: 1/10 (10%) 0s elapsed",
                           "calibrating: 3/10 (30%) 5s elapsed, about 18s left"]  # 2 in 5 s, 7 to go


def test_unknown_totals_and_stages() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressLine("probe ks", stream=out, terminal=False, clock=clock) as p:
        p.update(3, None)
        clock.now += 65
        p.stage("training")
    assert _lines(out) == ["probe ks: 3 done, 0s elapsed", "probe ks: training (1m 05s elapsed)"]


def test_quiet_prints_nothing_and_a_terminal_gets_a_bar_not_lines() -> None:
    out = io.StringIO()
    with ProgressLine("x", enabled=False, stream=out, terminal=False) as p:
        p.update(1, 2)
        p.stage("y")
    assert out.getvalue() == ""
    tty = io.StringIO()
    with ProgressLine("x", stream=tty, terminal=True) as p:
        p.update(1, 2)
    assert "x: 1/2 (50%)" not in tty.getvalue()


def test_the_interval_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OFACTL_PROGRESS_INTERVAL", "5")
    assert ProgressLine("x").interval == 5.0
    monkeypatch.setenv("OFACTL_PROGRESS_INTERVAL", "soon")
    assert ProgressLine("x").interval == 30.0


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m 01s"), (3599, "59m 59s"),
                                           (7620, "2h 07m")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
