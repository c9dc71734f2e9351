"""The one user-facing error type.

Library code raises :class:`OfactlError` for every problem a user can fix (a
missing file, a bad value, a foreign checkpoint).  The CLI prints it as one
line plus a hint; ``OFACTL_DEBUG=1`` shows the traceback as well.
"""

from __future__ import annotations


class OfactlError(Exception):
    """A problem the user can fix.

    Args:
        message: what went wrong and where (one line).
        hint: what to do about it (one line), or None.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self):  # picklable across DataLoader workers, hint included
        return (self.__class__, (self.message, self.hint))

    def __str__(self) -> str:  # one line, hint appended
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


def first_line(err: BaseException, limit: int = 200, *, with_type: bool = False) -> str:
    """Why ``err`` happened, in one short line: its first meaningful line (never a traceback line), at most
    ``limit`` characters.  The exception's type goes in front when the text alone says too little (a bare
    ``KeyError: 'x'``), or always with ``with_type`` (``RuntimeError: ...``; never for an :class:`OfactlError`,
    whose message is written for the user)."""
    lines = [line.strip() for line in str(err).strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Traceback", "File "))]
    line = lines[0] if lines else ""
    if not isinstance(err, OfactlError):
        if with_type:
            line = f"{type(err).__name__}: {line}" if line else type(err).__name__
        elif len(line) < 12:
            line = f"{type(err).__name__} {line}".strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."
