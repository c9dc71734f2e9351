"""Argument checks that run before a command imports torch or loads a model.

Importing torch takes seconds (tens of seconds on a loaded machine), so a
wrong path, a missing model or a contradictory pair of options must be
reported before it.  Everything here uses only the standard library and
ofactl's torch-free modules (``workspace``, ``period``, ``errors``); the
library functions still check their own arguments, these checks only make
the common mistakes fast.  ``tests/test_cli_precheck.py`` asserts that each
of these errors leaves torch unimported.
"""

from __future__ import annotations

import os
from pathlib import Path

from ofactl.errors import OfactlError

__all__ = ["existing", "model", "one_of", "output_file", "period_or_lambda", "precision"]


def model(value: str | None) -> Path:
    """The model directory of ``--model`` / ``$OFACTL_MODEL`` / ``ofactl.toml`` (see ``workspace.resolve_model``)."""
    from ofactl.workspace import resolve_model

    return resolve_model(value)


def existing(path: Path | str | None, what: str, hint: str) -> Path | None:
    """``path`` if it exists (None passes through); else one line naming ``what`` and the fix."""
    if path is None:
        return None
    path = Path(path)
    if not os.path.lexists(path):
        raise OfactlError(f"{what} {path}: no such file or folder", hint=hint)
    if not path.exists():
        raise OfactlError(f"{what} {path} is a broken symbolic link", hint=hint)
    return path


def output_file(path: Path | str, flag: str = "OUT") -> Path:
    """Check that ``path`` can be created: its nearest existing ancestor is a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise OfactlError(f"{flag} {path} is a folder, not a file", hint=f"name a file inside it, e.g. {path / 'out.h5'}")
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OfactlError(f"cannot write {path}: {ancestor} is not a folder", hint=f"choose another path for {flag}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OfactlError(f"cannot write in {ancestor}: permission denied or read-only",
                          hint=f"write {flag} to a folder you can write to (check its permissions, or whether the "
                               "disk is mounted read-only)")
    return path


def one_of(flags: dict[str, object]) -> str:
    """The one flag of ``flags`` that was given (not None/False); one line when none or several were."""
    given = [name for name, value in flags.items() if value is not None and value is not False]
    if len(given) != 1:
        names = list(flags)
        listed = " and ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + " and " + names[-1]
        found = f" (found {', '.join(given)})" if given else ""
        raise OfactlError(f"give exactly one of {listed}{found}")
    return given[0]


def period_or_lambda(period, lam: float | None, *, exact: bool = False) -> None:
    """The operating point's checks (:class:`ofactl.period.OperatingPoint`), saying which flags were given."""
    from ofactl.period import OperatingPoint

    one_of({"--period": period, "--lambda": lam})
    OperatingPoint.of(period, lam, exact)


def precision(value: str) -> str:
    """``--precision``: one of auto, fp32, bf16 (whether the device has bf16 is checked once torch is loaded)."""
    from ofactl.precision import PRECISIONS

    if value not in PRECISIONS:
        raise OfactlError(f"--precision must be auto, fp32 or bf16, found {value!r}")
    return value
