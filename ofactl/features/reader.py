"""Reading feature files: completeness, attrs, and the features of each utterance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ofactl.errors import OfactlError, first_line
from ofactl.features.files import (
    _PART_META,
    FORMAT,
    FORMAT_VERSION,
    _python,
    _tmp_path,
    parts_dir,
    utterance_ids,
)


def is_complete(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a finished ofactl features file."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT and bool(f.attrs.get("complete", False))
    except (OSError, KeyError, ValueError, RuntimeError):
        return False


def open_features(path: str | os.PathLike[str]) -> h5py.File:
    """Open a complete features file read-only (an ``h5py.File``; close it, or use ``with``).

    Raises:
        OfactlError: the file is missing, unfinished, unreadable, not an
            ofactl features file, or from a newer ofactl.
    """
    p = Path(path)
    resume_hint = "run the same `ofactl extract` command again to resume it"
    if not p.exists():
        if parts_dir(p).is_dir() or _tmp_path(p).exists():
            raise OfactlError(f"{p} is not finished: its extraction was interrupted", hint=resume_hint)
        raise OfactlError(f"features file {p} does not exist", hint="create it with `ofactl extract`")
    unreadable_hint = "it may be truncated or still being written; re-create it with `ofactl extract`"
    try:
        f = h5py.File(p, "r")
    except (OSError, ValueError) as err:
        raise OfactlError(f"{p} is not a readable HDF5 file ({first_line(err)})", hint=unreadable_hint) from None
    try:
        try:
            keys = set(f.attrs.keys())
            fmt, complete = f.attrs.get("format"), bool(f.attrs.get("complete", False))
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            raise OfactlError(f"{p} is not a readable HDF5 file ({first_line(err)})", hint=unreadable_hint) from None
        if _PART_META in keys:
            raise OfactlError(f"{p} is a part of an unfinished extraction, not a features file", hint=resume_hint)
        if fmt != FORMAT:
            raise OfactlError(f"{p} is not an ofactl features file (no format={FORMAT!r} attribute)")
        if not complete:
            raise OfactlError(f"{p} is incomplete: it was not finished", hint=resume_hint)
        version = int(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise OfactlError(f"{p} has features format {version}; this ofactl reads up to {FORMAT_VERSION}",
                              hint="upgrade ofactl")
    except BaseException:
        f.close()
        raise
    return f


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file attributes as plain Python values (``skipped`` decoded to a list of dicts).

    Reads any file the writer produced (no completeness check); see :func:`open_features`.
    """
    try:
        with h5py.File(path, "r") as f:
            attrs = {key: _python(value) for key, value in f.attrs.items()}
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise OfactlError(f"{path} is not a readable HDF5 file ({first_line(err)})") from None
    if isinstance(attrs.get("skipped"), str):
        attrs["skipped"] = json.loads(attrs["skipped"])
    for key in ("complete", "exact"):
        if key in attrs:
            attrs[key] = bool(attrs[key])
    return attrs


def read(path: str | os.PathLike[str], layer: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(id, features, frame_times_s)`` for every utterance, sorted by id.

    Args:
        path: a complete features file.
        layer: with a ``layer="all"`` file, the layer to return (``(N, D)``);
            None returns ``(L, N, D)``.  With a one-layer file it must be None
            or that layer.

    Raises:
        OfactlError: the file is not complete (see :func:`open_features`), or
            ``layer`` is not in it.
    """
    f = open_features(path)
    try:
        stored = _python(f.attrs["layer"])
        index = None
        if layer is not None:
            if stored == "all":
                layers = _python(f.attrs["layers"])
                if layer not in layers:
                    raise OfactlError(f"{path} has layers {layers}, not layer {layer}")
                index = layers.index(layer)
            elif layer != stored:
                raise OfactlError(f"{path} holds layer {stored}, not layer {layer}")
        ids = utterance_ids(f)
    except BaseException:
        f.close()
        raise
    return _iterate(f, ids, index)


def _iterate(f: h5py.File, ids: list[str], index: int | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    with f:
        for utt_id in ids:
            group = f[utt_id]
            feats = group["features"][index] if index is not None else group["features"][()]
            yield utt_id, feats, group["frame_times_s"][()]
