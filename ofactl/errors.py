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
