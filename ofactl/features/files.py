"""The pieces the writer, the merge and the reader share: names, paths, crash-safe helpers, attrs and ids."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from ofactl.atomic import fsync_dir as _fsync_dir
from ofactl.errors import OfactlError, first_line

FORMAT = "ofactl.features"
FORMAT_VERSION = 1

#: HDF5 object formats: readable by HDF5 >= 1.10, large attributes allowed.
_LIBVER = ("v108", "v110")
_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
_RESERVED_NAMES = frozenset({"features", "frame_times_s"})
#: Attributes the writer computes; a caller may not set them.
_COMPUTED_ATTRS = frozenset({
    "measured_period_ms", "n_utterances", "n_skipped", "total_duration_s", "total_frames", "feature_dim",
    "skipped", "complete", "format", "format_version", "run_fingerprint", "dtype",
})
#: Attributes that do not identify a run (left out of its fingerprint).
_VOLATILE_ATTRS = frozenset({"created_at", "ofactl_version"})
_PART_RE = re.compile(r"^(\d{5,})-(\d{8,})\.h5$")
_PART_META = "ofactl_part"
_MERGED = "MERGED"
_ATTRS_FILE = "attrs.json"
_TRASH_PREFIX = ".trash-"
_DEFAULT_PART_BYTES = 64 << 20


class Record(NamedTuple):
    """One utterance's features, as passed to :meth:`FeatureWriter.write`.

    Attributes:
        id: the utterance id (the group name).
        features: ``(N, D)`` array or tensor; ``(L, N, D)`` when ``layer="all"``.
        frame_times_s: ``(N,)`` time of each output frame's centre of mass, seconds.
        duration_s: seconds of audio of the utterance.
        lam: the lambda the utterance was compressed with.
    """

    id: str
    features: Any
    frame_times_s: Any
    duration_s: float
    lam: float


# --------------------------------------------------------------------------- paths


def parts_dir(out_path: str | os.PathLike[str]) -> Path:
    """``OUT.h5.parts``: where unfinished runs keep their part files."""
    return Path(str(out_path) + ".parts")


def _tmp_path(out_path: Path) -> Path:
    return Path(str(out_path) + ".tmp")


def _run_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _part_files(run_dir: Path) -> list[tuple[int, int, Path]]:
    found = []
    for path in run_dir.iterdir():
        match = _PART_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return sorted(found)


# --------------------------------------------------------------------------- crash-safe file helpers


def _stage(name: str) -> None:
    """Marks the crash windows of a merge: with ``OFACTL_FAULT=features-<name>`` (test-only, see
    :mod:`ofactl.faults`) the process dies here; tests may also replace it."""
    from ofactl import faults

    faults.point(f"features-{name}")


def _discard(directory: Path) -> None:
    """Delete a directory so that a kill midway never leaves a half-deleted run in place."""
    trash = directory.parent / f"{_TRASH_PREFIX}{uuid.uuid4().hex}"
    try:
        os.rename(directory, trash)
    except FileNotFoundError:
        return  # another rank got there first
    _fsync_dir(directory.parent)
    shutil.rmtree(trash, ignore_errors=True)


def recover(out_path: str | os.PathLike[str]) -> None:
    """Finish what a killed merge of ``out_path`` left behind: a final ``OUT.h5.tmp`` is moved into place, the
    parts of a finished merge are deleted.  Idempotent; call it before deciding whether ``out_path`` is done."""
    _recover(Path(out_path))


def _recover(out_path: Path) -> None:
    """Finish what a killed merge left behind (idempotent; several ranks may run it at once)."""
    root = parts_dir(out_path)
    if not root.is_dir():
        return
    for trash in root.iterdir():
        if trash.name.startswith(_TRASH_PREFIX):
            shutil.rmtree(trash, ignore_errors=True)
    for run_dir in _run_dirs(root):
        if (run_dir / _MERGED).exists():  # OUT.h5.tmp was final: move it into place, drop the parts
            tmp = _tmp_path(out_path)
            if tmp.exists():
                try:
                    os.replace(tmp, out_path)
                except FileNotFoundError:
                    pass
                _fsync_dir(out_path.parent)
            _discard(run_dir)
    try:
        root.rmdir()  # only when empty
    except OSError:
        pass


# --------------------------------------------------------------------------- attrs


def _plain(value: Any, key: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [_plain(v, key) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
        kinds = {type(v) for v in items}
        if not items or not (kinds <= {int} or kinds <= {int, float} or kinds <= {str}):
            raise ValueError(f"attr {key!r} must be a non-empty list of numbers or of strings, found {value!r}")
        return items
    raise ValueError(f"attr {key!r} must be a str, number, bool or list, found {type(value).__name__} {value!r}")


def _normalise_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Plain, validated run attrs; None values are dropped (the attribute is absent)."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attr names must be non-empty str, found {key!r}")
        if key in _COMPUTED_ATTRS:
            raise ValueError(f"attr {key!r} is computed by the writer; do not pass it")
        plain = _plain(value, key)
        if plain is not None:
            out[key] = plain
    for key in ("layer", "model_sha256"):
        if key not in out:
            raise ValueError(f"attrs must include {key!r}, found keys {sorted(out)}")
    exact = out.get("exact", False)
    if not isinstance(exact, bool):
        raise ValueError(f"attr 'exact' must be a bool, found {exact!r}")
    if exact == ("lambda" in out):
        raise ValueError("attrs must include either 'lambda' (one lambda for all utterances) or exact=True, not both")
    layer = out["layer"]
    if layer == "all":
        layers = out.get("layers")
        if not isinstance(layers, list) or not all(isinstance(v, int) for v in layers):
            raise ValueError("layer='all' needs attr 'layers': the layer index of each slice along axis 0 of features")
    elif isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(f"attr 'layer' must be an int or 'all', found {layer!r}")
    return out


def _fingerprint(attrs: Mapping[str, Any], dtype: np.dtype) -> str:
    ident = {k: v for k, v in attrs.items() if k not in _VOLATILE_ATTRS}
    ident["dtype"] = dtype.name
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_fingerprint(attrs: Mapping[str, Any], dtype: str | np.dtype = "float16") -> str:
    """The fingerprint a :class:`FeatureWriter` with these attrs and dtype gives its run."""
    return _fingerprint(_normalise_attrs(attrs), np.dtype(dtype))


def _describe_difference(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    def show(value: Any) -> str:
        if value is _MISSING:
            return "(none)"
        text = str(value)
        return text[:12] + "..." if len(text) > 16 else text

    keys = sorted(set(ours) | set(theirs))
    diffs = [f"{k} {show(theirs.get(k, _MISSING))} there, {show(ours.get(k, _MISSING))} here"
             for k in keys if k not in _VOLATILE_ATTRS and ours.get(k, _MISSING) != theirs.get(k, _MISSING)]
    if not diffs:
        return "other settings"
    return "; ".join(diffs[:3]) + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")


_MISSING = object()


def _set_attr(attrs: h5py.AttributeManager, key: str, value: Any) -> None:
    if isinstance(value, list) and value and isinstance(value[0], str):
        attrs[key] = np.array(value, dtype=h5py.string_dtype())
    else:
        attrs[key] = value


def _python(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_python(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- ids


def _check_id(utt_id: Any) -> str:
    if not isinstance(utt_id, str) or not utt_id:
        raise ValueError(f"utterance id must be a non-empty str, found {utt_id!r}")
    for part in utt_id.split("/"):
        if part in ("", ".", "..") or part in _RESERVED_NAMES:
            raise ValueError(
                f"utterance id {utt_id!r} cannot name an HDF5 group: path components may not be empty, "
                f"'.', '..', 'features' or 'frame_times_s'"
            )
    return utt_id


def utterance_ids(f: h5py.File | h5py.Group) -> list[str]:
    """All utterance ids in an open features file (groups holding ``features``), sorted."""
    names: list[str] = []
    f.visit(names.append)  # C-level traversal; names of groups and datasets
    suffix = "/features"
    ids = [n[: -len(suffix)] for n in names if n.endswith(suffix)]
    if "features" in names:
        ids.append("")  # not produced by the writer; keeps a malformed file visible
    return sorted(i for i in ids if i)


# --------------------------------------------------------------------------- part files


def _copy_utterance(src: h5py.Group, dst: h5py.Group) -> None:
    """Copy one utterance's datasets and attrs (not the groups of ids nested below it)."""
    for name in _RESERVED_NAMES:
        src.file.copy(src[name], dst, name=name)
    for key, value in src.attrs.items():
        dst.attrs[key] = value


def _write_group(f: h5py.File, rec: Record) -> None:
    group = f.require_group(rec.id)  # may exist already as the parent of a nested id
    group.create_dataset("features", data=rec.features)
    group.create_dataset("frame_times_s", data=rec.frame_times_s)
    group.attrs["duration_s"] = rec.duration_s
    group.attrs["lambda"] = rec.lam


def _write_error(path: Path, err: OSError) -> OfactlError:
    """One line for a failed write: a full disk says so, and that the same command resumes."""
    if err.errno == errno.ENOSPC:
        return OfactlError(f"no space left on device writing {path}",
                           hint="free space and re-run the same command to resume: what was written is kept")
    return OfactlError(f"cannot write {path}: {err.strerror or err}")


def _read_part_meta(path: Path) -> dict[str, Any]:
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs[_PART_META])
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise OfactlError(f"part file {path} is unreadable ({first_line(err)})",
                          hint="delete it and run the same command again: its utterances will be redone") from None


def _read_json(path: Path) -> dict[str, Any]:
    """A run's attrs.json as one dict of its settings (attrs plus dtype); {} if unreadable."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return dict(stored["attrs"], dtype=stored["dtype"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
