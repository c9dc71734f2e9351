"""Progress of long commands, on a terminal and in a log.

On a terminal a rich bar (done/total, time left, an info column) replaces
itself in place.  In a log file or a pipe, where a bar prints nothing useful,
the same progress comes as plain lines: the first update, then at most one
line every ``interval`` seconds (``$OFACTL_PROGRESS_INTERVAL``, default 30),
and the last one::

    pretrain: 200/600 (33%) 2m 10s elapsed, about 4m 20s left; loss 1.234 ...

so a job in the background, a scheduler's log or the demo's lanes show how
far they are and when they will end.  Torch-free.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Callable

__all__ = ["Progress", "ProgressLine", "INTERVAL_ENV_VAR", "format_duration"]

#: The library's one progress callback: ``progress(done, total, desc)`` (``desc`` may be empty).
#: :meth:`ProgressLine.update` is one.
Progress = Callable[[int, int, str], None]

#: Seconds between two plain progress lines (not on a terminal).
INTERVAL_ENV_VAR = "OFACTL_PROGRESS_INTERVAL"


def format_duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``2h 07m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class ProgressLine:
    """``with ProgressLine("extracting") as p: p.update(done, total, info="...")``.

    Args:
        description: what is being done (the start of every line).
        enabled: False shows nothing (``--quiet``).
        stream: where to write (default: stderr).
        terminal: force the bar (True) or the plain lines (False); default: whether ``stream`` is a terminal.
        interval: seconds between plain lines (default: ``$OFACTL_PROGRESS_INTERVAL`` or 30).
        clock: a ``time.monotonic`` stand-in, for tests.
    """

    def __init__(self, description: str, *, enabled: bool = True, stream: IO[str] | None = None,
                 terminal: bool | None = None, interval: float | None = None, clock=time.monotonic) -> None:
        self.description = description
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = _isatty(self.stream) if terminal is None else terminal
        self.interval = _interval() if interval is None else interval
        self._clock = clock
        self._bar = None
        self._task = None
        self._t0: float | None = None
        self._start_done: int | None = None
        self._last_line: float | None = None
        self._pending: str | None = None

    def __enter__(self) -> ProgressLine:
        self._t0 = self._clock()
        if self.enabled and self.terminal:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn(f"[bold]{self.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=Console(file=self.stream), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=None, info="")
        return self

    def __call__(self, done: int, total: int | None, info: str = "") -> None:
        self.update(done, total, info)

    def update(self, done: int, total: int | None, info: str = "") -> None:
        """``done`` of ``total`` units finished (``total`` None: not known yet)."""
        if not self.enabled:
            return
        if self._t0 is None:
            self._t0 = self._clock()
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, info=info)
            return
        now = self._clock()
        if self._start_done is None:
            self._start_done = done  # a resumed job: the rate counts only this run's work
        line = self._line(done, total, info, now)
        finished = total is not None and done >= total
        if self._last_line is None or finished or now - self._last_line >= self.interval:
            self._emit(line)
            self._last_line = now
            self._pending = None
        else:
            self._pending = line

    def stage(self, text: str) -> None:
        """A new stage of the job (few per run): shown beside the bar, or as its own line in a log."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, info=text)
            return
        elapsed = self._clock() - (self._t0 if self._t0 is not None else self._clock())
        self._emit(f"{self.description}: {text} ({format_duration(elapsed)} elapsed)")

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        elif self._pending is not None:
            self._emit(self._pending)  # where the job stopped (or finished), even between two lines
            self._pending = None

    def _line(self, done: int, total: int | None, info: str, now: float) -> str:
        elapsed = now - (self._t0 if self._t0 is not None else now)
        if total:
            text = f"{self.description}: {done}/{total} ({100 * done / total:.0f}%) {format_duration(elapsed)} elapsed"
            new = done - (self._start_done or 0)
            if 0 < new and done < total:
                text += f", about {format_duration(elapsed / new * (total - done))} left"
        else:
            text = f"{self.description}: {done} done, {format_duration(elapsed)} elapsed"
        return f"{text}; {info}" if info else text

    def _emit(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or full log must not stop the job
            pass


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV_VAR, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 30.0
    except ValueError:
        return 30.0
