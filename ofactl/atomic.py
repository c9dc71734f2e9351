"""Atomic, durable file writes: nothing written earlier is ever lost or half-replaced.

Every file ofactl writes in place (checkpoints, configs, calibrations, the
workspace file, feature parts) goes through :func:`atomic_write`: a temporary
file in the same folder, flushed and fsynced, renamed over the target, then
the folder fsynced so the rename survives a crash.  A kill at any moment
leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ofactl.errors import OfactlError


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames in ``directory`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], mode: int | None = None,
                 make_dirs: bool = False) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, fsync it and rename it onto ``path``.

    ``mode`` defaults to the existing file's permissions, else 0o644.  An
    ``OSError`` (disk full, no permission) becomes one :class:`OfactlError` line;
    the temporary file never outlives the call.  ``make_dirs`` creates the
    folder (again, should another process remove it meanwhile).
    """
    path = Path(path)
    if mode is None:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    for attempt in range(3):
        try:
            if make_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            break
        except FileNotFoundError as err:
            if not make_dirs or attempt == 2:
                raise OfactlError(f"cannot write {path}: {err.strerror or err}") from None
        except OSError as err:
            raise OfactlError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        from ofactl import faults

        faults.point(f"atomic-write:{path.name}")  # test-only: die with the temporary file written
        os.replace(tmp_name, path)
    except OSError as err:
        Path(tmp_name).unlink(missing_ok=True)
        raise OfactlError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None, make_dirs: bool = False) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), mode, make_dirs)
