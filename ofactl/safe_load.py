"""The one way ofactl unpickles a file: ``torch.load(weights_only=True)``, each failure one line.

Model directories, training states, s3prl checkpoints and teacher checkpoints
all come through :func:`torch_load`.  A file that holds Python objects (code)
is refused in ofactl's own words, never with torch's advice to load it
unsafely; an empty, truncated, corrupted or foreign file is named as such.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ofactl.errors import OfactlError, first_line

_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"  # torch >= 1.6 archives, legacy pickles
_REFUSED = ("ofactl writes plain data only (weights, numbers, strings); a file with code in it did not come from "
            "ofactl: re-create it with ofactl, do not load it")


def sniff(head: bytes, file: Path) -> str:
    """A few words on what a file that is not a PyTorch checkpoint seems to be."""
    if len(head) >= 9 and head[8:9] == b"{":
        return "it is a safetensors file"
    try:
        with open(file, "rb") as handle:
            handle.read(4096).decode("utf-8")
    except (UnicodeDecodeError, OSError):
        return "unrecognised binary data"
    return "it is a text file"


def torch_load(file: str | Path, *, kind: str, hint: str | None = None, allowed_globals: Sequence[Any] = (),
               refused_hint: str | Callable[[str], str | None] | None = None) -> Any:
    """The plain data in ``file`` (on the CPU), read with ``weights_only=True``.

    Args:
        kind: what the file should be, for the messages (``"an ofactl model"``).
        hint: the hint of a file that is missing, empty or not a checkpoint.
        allowed_globals: classes besides tensors that may be rebuilt (e.g. numpy dtypes).
        refused_hint: the hint of a file with Python objects in it; a callable gets the object's name.

    Raises:
        OfactlError: one line naming the file and what is wrong with it.
    """
    file = Path(file)
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(16)
    except OSError as err:
        raise OfactlError(f"cannot read {file}: {err.strerror or err}", hint=hint) from None
    if size == 0:
        raise OfactlError(f"cannot read {file} as {kind}: it is empty (0 bytes): it was not written completely",
                          hint=hint or "re-create it")
    is_zip = head.startswith(_ZIP)
    if not (is_zip or head.startswith(_PICKLE)):
        raise OfactlError(f"cannot read {file} as {kind}: not a PyTorch checkpoint ({sniff(head, file)})", hint=hint)
    try:
        with torch.serialization.safe_globals(list(allowed_globals)), open(file, "rb") as handle:
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = found.group(1) if found else "arbitrary Python objects"
            chosen = refused_hint(what) if callable(refused_hint) else refused_hint
            raise OfactlError(f"cannot read {file} as {kind}: it holds Python objects ({what}); refused, nothing in "
                              "it was loaded", hint=chosen or _REFUSED) from None
        raise OfactlError(f"cannot read {file} as {kind}: it is corrupted (it cannot be unpickled: {first_line(err)})",
                          hint="re-create or re-copy the file") from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError) as err:
        if is_zip or isinstance(err, EOFError):
            detail = "the zip archive cannot be read" if is_zip else "the data ends early"
            raise OfactlError(f"cannot read {file} as {kind}: it is truncated or corrupted ({size} bytes; {detail})",
                              hint="it was probably not written or copied completely: re-create or re-copy it") from None
        raise OfactlError(f"cannot read {file} as {kind}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                          f"{first_line(err)})", hint=hint) from None


__all__ = ["sniff", "torch_load"]
