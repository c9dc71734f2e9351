"""HDF5 features on disk: a crash-safe, resumable, rank-sharded writer and a reader.

File layout (the contract of DESIGN.md)::

    OUT.h5
      <utterance id>/                 one group per utterance, named by its id
        features        (N, D)        float16 or float32; (L, N, D) when layer="all"
        frame_times_s   (N,)          float64, time of each output frame's centre of mass
        attrs: duration_s (float), lambda (float, this utterance's lambda)
      attrs (file):
        target_period_ms    the period the user asked for (absent when none was)
        measured_period_ms  1000 * total_duration_s / total_frames
        lambda | exact      the lambda of every utterance, or exact=True (one
                            lambda per utterance, stored in each group)
        layer               an int, or "all" with ``layers`` (the layer index
                            of each slice along axis 0 of ``features``)
        model_sha256, ofactl_version, created_at (UTC, ISO 8601)
        precision           "fp32" or "bf16": the model's forward (``ofactl extract``'s files)
        skipped             JSON list of {"id", "path", "reason"} for unreadable inputs
        n_utterances, n_skipped, total_duration_s, total_frames, feature_dim,
        dtype               totals over the utterances written, the features' dtype
        run_fingerprint     hash of the settings (the attrs given to the writer + dtype)
        format = "ofactl.features", format_version, complete = True
        ... plus every other attr given to the writer (e.g. data, split)

An id taken from a relative path (``"spk/chapter/utt"``) becomes nested groups,
so ``f["spk/chapter/utt"]`` works; a path component of an id may not be
empty, ``.``, ``..``, ``features`` or ``frame_times_s``.

Crash safety.  ``OUT.h5`` is never written in place: every batch of records
goes to a small part file, written as a temporary file, fsync'ed and renamed::

    OUT.h5.parts/<fingerprint>/attrs.json          the settings of this run
    OUT.h5.parts/<fingerprint>/<rank>-<seq>.h5     finished parts (same layout)
    OUT.h5.parts/<fingerprint>/MERGED              OUT.h5.tmp is final (merge step 2)
    OUT.h5.tmp                                     the merge in progress

A killed run leaves finished parts (and at most a temporary file, ignored);
running it again reads the ids in the parts (:attr:`FeatureWriter.done_ids`)
and goes on.  :func:`merge` writes ``OUT.h5.tmp``, marks the parts ``MERGED``,
renames the temporary file onto ``OUT.h5`` and only then deletes the parts; a
merge killed before the mark starts again from the parts, one killed after it
is finished by the next writer or merge.  So ``OUT.h5`` exists only complete,
and ``kill -9`` at any moment followed by the same command ends with the same
content as an uninterrupted run (creation time aside).  Parts of a run with
other settings (another model, lambda, period, layer, dtype, data, ...) live
under another fingerprint and are never mixed in: the writer refuses them (or
discards them with ``overwrite=True``).

Scale-out: every rank of a torchrun job opens a writer with its own ``rank``
(its parts are named after it); after a barrier one rank calls :func:`merge`.

This module imports numpy and h5py only (no torch): torch tensors are
accepted wherever arrays are.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from ofactl import __version__
from ofactl.atomic import atomic_write_text as _atomic_write_text, fsync_dir as _fsync_dir, fsync_file as _fsync_file
from ofactl.errors import OfactlError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Record",
    "FeatureWriter",
    "merge",
    "read",
    "read_attrs",
    "open_features",
    "utterance_ids",
    "is_complete",
    "parts_dir",
    "recover",
]

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


# --------------------------------------------------------------------------- writer


def _to_numpy(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, found dtype {array.dtype}")
    return array


class FeatureWriter:
    """Writes features for one run as crash-safe part files; a context manager.

    Args:
        out_path: the final ``.h5`` file.
        attrs: the run's file attributes (plain values; None drops a key).
            Required: ``layer`` (an int, or ``"all"`` with ``layers``),
            ``model_sha256``, and ``lambda`` or ``exact=True``; expected:
            ``target_period_ms`` and what identifies the input (``data``,
            ``split``), since attrs decide which parts may be resumed.
            ``measured_period_ms`` and the totals are computed by :func:`merge`.
        rank: this process's rank; parts are named ``<rank>-<seq>.h5``.
        world_size: the number of ranks; with 1, leaving the ``with`` block
            without an exception merges; otherwise each rank only flushes and
            one rank calls :func:`merge` after a barrier.
        overwrite: replace an existing complete ``out_path`` (at merge time,
            atomically) and discard unfinished runs with other settings.
            Without it both are refused.
        dtype: ``"float16"`` or ``"float32"`` for ``features``.
        part_bytes: buffered feature bytes that trigger a part file (what a
            kill can lose; 0 writes one part per :meth:`write` call).

    Attributes:
        done_ids: ids already written or skipped (by any rank, in earlier runs
            of the same settings, or by this writer): leave them out.

    Raises:
        OfactlError: ``out_path`` exists and ``overwrite`` is False, or an
            unfinished run with other settings is in the way.

    Example::

        with FeatureWriter("feats.h5", {"layer": 2, "lambda": 1.0, "model_sha256": sha}) as w:
            for batch in batches:
                w.write([Record(u, feats, times, dur, 1.0) for ... if u not in w.done_ids])
    """

    def __init__(
        self,
        out_path: str | os.PathLike[str],
        attrs: Mapping[str, Any],
        *,
        rank: int = 0,
        world_size: int = 1,
        overwrite: bool = False,
        dtype: str | np.dtype = "float16",
        part_bytes: int = _DEFAULT_PART_BYTES,
    ):
        self.out_path = Path(out_path)
        self.attrs = _normalise_attrs(attrs)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be float16 or float32, found {self.dtype}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, found rank {rank}, world_size {world_size}")
        self.rank, self.world_size, self.overwrite, self.part_bytes = rank, world_size, overwrite, part_bytes
        self.fingerprint = _fingerprint(self.attrs, self.dtype)
        self.run_dir = parts_dir(self.out_path) / self.fingerprint
        self.done_ids: set[str] = set()
        self._buffer: list[Record] = []
        self._skips: list[dict[str, str]] = []
        self._buffered_bytes = 0
        self._seq = 0
        self._shape: tuple[int, ...] | None = None  # (D,) or (L, D)
        self.closed = False
        self._prepare()

    # -- set-up
    def _prepare(self) -> None:
        out = self.out_path
        if not out.parent.is_dir():
            raise OfactlError(f"cannot write {out}: folder {out.parent} does not exist")
        _recover(out)
        if out.exists() and not self.overwrite:
            if is_complete(out):
                same = _python(read_attrs(out).get("run_fingerprint")) == self.fingerprint
                what = "complete features with these settings: nothing to do" if same else "complete features"
                raise OfactlError(f"{out} already holds {what}", hint="pass --overwrite to extract again, or choose another output file")
            raise OfactlError(f"{out} exists and is not a complete ofactl features file",
                              hint="pass --overwrite to replace it, or choose another output file")
        root = parts_dir(out)
        for other in _run_dirs(root):
            if other.name == self.fingerprint:
                continue
            if self.overwrite:
                _discard(other)
                continue
            theirs = _read_json(other / _ATTRS_FILE)
            ours = dict(self.attrs, dtype=self.dtype.name)
            raise OfactlError(
                f"{root} holds an unfinished extraction with other settings ({_describe_difference(ours, theirs)})",
                hint="run the same command as before to resume it, or pass --overwrite to discard it",
            )
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a read-only or forbidden folder: the user's to fix, in one line
            raise OfactlError(f"cannot write in {out.parent}: {err.strerror or err}",
                              hint="write the output to a folder you can write to (check its permissions, or "
                                   "whether the disk is mounted read-only)") from None
        attrs_file = self.run_dir / _ATTRS_FILE
        if not attrs_file.exists():
            _atomic_write_text(attrs_file, json.dumps({"attrs": self.attrs, "dtype": self.dtype.name}, indent=1, sort_keys=True))
        for stale in self.run_dir.glob(f".{self.rank:05d}-*.tmp"):  # this rank's own half-written part
            stale.unlink(missing_ok=True)
        for part_rank, seq, path in _part_files(self.run_dir):
            meta = _read_part_meta(path)
            self.done_ids.update(meta["ids"])
            self.done_ids.update(s["id"] for s in meta["skipped"])
            if part_rank == self.rank:
                self._seq = max(self._seq, seq + 1)

    # -- context manager
    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            try:
                self.close()  # keep what was written before the error
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            return
        self.close()
        if self.world_size == 1:
            self.merge()

    # -- writing
    def write(self, records: Iterable[Record | tuple]) -> None:
        """Buffer records; a part file is written once ``part_bytes`` are buffered.

        Raises:
            ValueError: a malformed record (shape, dtype, id) or an id already done.
        """
        if self.closed:
            raise ValueError("write() on a closed FeatureWriter")
        for record in records:
            rec = self._check_record(Record(*record))
            self._buffer.append(rec)
            self.done_ids.add(rec.id)
            self._buffered_bytes += rec.features.nbytes + rec.frame_times_s.nbytes
        if self._buffered_bytes >= self.part_bytes:
            self.flush()

    def skip(self, utt_id: str, path: str | os.PathLike[str], reason: str) -> None:
        """Record an input that could not be used; it is listed in the file's ``skipped``."""
        if self.closed:
            raise ValueError("skip() on a closed FeatureWriter")
        utt_id = _check_id(utt_id)
        if utt_id in self.done_ids:
            raise ValueError(f"utterance id {utt_id!r} was already written or skipped")
        self._skips.append({"id": utt_id, "path": os.fspath(path), "reason": str(reason)})
        self.done_ids.add(utt_id)

    def _check_record(self, rec: Record) -> Record:
        utt_id = _check_id(rec.id)
        if utt_id in self.done_ids:
            raise ValueError(f"utterance id {utt_id!r} was already written or skipped (duplicate id?)")
        feats = _to_numpy(rec.features, f"features of {utt_id!r}")
        times = _to_numpy(rec.frame_times_s, f"frame_times_s of {utt_id!r}").astype(np.float64)
        ndim = 3 if self.attrs["layer"] == "all" else 2
        if feats.ndim != ndim:
            want = "(layer, frame, feature)" if ndim == 3 else "(frame, feature)"
            raise ValueError(f"features of {utt_id!r}: expected shape {want}, found {feats.shape}")
        if ndim == 3 and feats.shape[0] != len(self.attrs["layers"]):
            raise ValueError(f"features of {utt_id!r}: expected {len(self.attrs['layers'])} layers, found {feats.shape[0]}")
        n = feats.shape[-2]
        if times.shape != (n,):
            raise ValueError(f"frame_times_s of {utt_id!r}: expected shape ({n},), found {times.shape}")
        shape = feats.shape[:-2] + feats.shape[-1:]
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise ValueError(f"features of {utt_id!r}: feature shape {shape} differs from earlier records' {self._shape}")
        duration_s, lam = float(rec.duration_s), float(rec.lam)
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"duration_s of {utt_id!r} must be finite and >= 0, found {rec.duration_s}")
        if not math.isfinite(lam):
            raise ValueError(f"lam of {utt_id!r} must be finite, found {rec.lam}")
        return Record(utt_id, np.ascontiguousarray(feats, dtype=self.dtype), times, duration_s, lam)

    def flush(self) -> None:
        """Write the buffered records and skips as one part file (tmp + fsync + rename)."""
        if not self._buffer and not self._skips:
            return
        name = f"{self.rank:05d}-{self._seq:08d}.h5"
        final = self.run_dir / name
        tmp = self.run_dir / f".{name}.tmp"
        meta = {
            "fingerprint": self.fingerprint, "rank": self.rank, "seq": self._seq,
            "ids": [r.id for r in self._buffer], "skipped": self._skips,
            "attrs": self.attrs, "dtype": self.dtype.name,
        }
        # the part is built in memory and written with plain file calls: HDF5 does not survive a write that
        # fails half-way (a full disk made it crash the process), Python's file calls raise a clean OSError
        image = io.BytesIO()
        with h5py.File(image, "w", libver=_LIBVER) as f:
            f.attrs[_PART_META] = json.dumps(meta)
            for rec in self._buffer:
                _write_group(f, rec)
        try:
            with open(tmp, "wb") as handle:
                handle.write(image.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise _write_error(final, err) from None
        _fsync_dir(self.run_dir)
        self._seq += 1
        self._buffer, self._skips, self._buffered_bytes = [], [], 0

    def close(self) -> None:
        """Flush; the writer takes no more records.  Does not merge."""
        if not self.closed:
            self.flush()
            self.closed = True

    def merge(self) -> dict[str, Any]:
        """:func:`merge` this run's parts into ``out_path`` (after :meth:`close`)."""
        self.close()
        return merge(self.out_path, fingerprint=self.fingerprint)


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_part_meta(path: Path) -> dict[str, Any]:
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs[_PART_META])
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise OfactlError(f"part file {path} is unreadable ({_first_line(err)})",
                          hint="delete it and run the same command again: its utterances will be redone") from None


def _read_json(path: Path) -> dict[str, Any]:
    """A run's attrs.json as one dict of its settings (attrs plus dtype); {} if unreadable."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return dict(stored["attrs"], dtype=stored["dtype"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# --------------------------------------------------------------------------- merge


def merge(out_path: str | os.PathLike[str], *, fingerprint: str | None = None) -> dict[str, Any]:
    """Merge the finished parts of a run into ``out_path``, atomically.

    Call it once, on one rank, after every rank closed its writer (a barrier).
    Idempotent and crash-safe: killed at any point, calling it again (or
    opening a writer) finishes the job from the parts.

    Args:
        out_path: the final ``.h5`` file.
        fingerprint: which run to merge (``FeatureWriter.fingerprint``); None
            takes the only run under ``OUT.h5.parts``.

    Returns:
        A summary: ``path``, ``n_utterances``, ``n_skipped``, ``total_frames``,
        ``total_duration_s``, ``measured_period_ms``.

    Raises:
        OfactlError: nothing to merge, several runs, unreadable parts, an id
            written twice.
    """
    out = Path(out_path)
    _recover(out)
    root = parts_dir(out)
    runs = _run_dirs(root)
    if fingerprint is not None:
        runs = [r for r in runs if r.name == fingerprint]
    if not runs:
        if out.exists() and is_complete(out):  # already merged (maybe by a recovery just now)
            return _summary(out, read_attrs(out))
        raise OfactlError(f"nothing to merge for {out}: {root} holds no parts", hint="run the extraction first")
    if len(runs) > 1:
        raise OfactlError(f"{root} holds several unfinished runs ({', '.join(r.name for r in runs)})",
                          hint="pass the run's fingerprint, or delete the runs you do not want")
    run_dir = runs[0]
    parts = _part_files(run_dir)
    metas = [(path, _read_part_meta(path)) for _, _, path in parts]
    settings = _read_json(run_dir / _ATTRS_FILE)
    if not settings and metas:  # attrs.json lost: every part carries the settings too
        settings = dict(metas[0][1]["attrs"], dtype=metas[0][1]["dtype"])
    if not settings:
        raise OfactlError(f"nothing to merge for {out}: {run_dir} holds no parts", hint="run the extraction first")
    dtype = settings.pop("dtype")
    attrs = settings
    owner: dict[str, Path] = {}
    skipped: dict[str, dict[str, str]] = {}
    for path, meta in metas:
        if meta["fingerprint"] != run_dir.name:
            raise OfactlError(f"part file {path} belongs to another run ({meta['fingerprint']})", hint="delete it")
        for utt_id in meta["ids"]:
            if utt_id in owner:
                raise OfactlError(f"utterance id {utt_id!r} was written twice ({owner[utt_id].name} and {path.name})",
                                  hint="ids must be unique: take them from relative paths (--id-from relpath)")
            owner[utt_id] = path
        for skip in meta["skipped"]:
            skipped.setdefault(skip["id"], skip)
    both = sorted(set(owner) & set(skipped))
    if both:
        raise OfactlError(f"utterance id {both[0]!r} was both written and skipped", hint="ids must be unique")
    need = sum(path.stat().st_size for _, _, path in parts)
    free = shutil.disk_usage(out.parent).free
    if free < need * 1.05 + (1 << 20):  # HDF5 cannot recover from a write that fails half-way: check first
        raise OfactlError(f"no space left on device for {out}: the merge needs about {need / 2**20:.1f} MB, "
                          f"{free / 2**20:.1f} MB are free",
                          hint="free space and re-run the same command to resume: the parts written are kept")

    tmp = _tmp_path(out)
    tmp.unlink(missing_ok=True)  # a merge killed before its MERGED mark
    durations: dict[str, float] = {}
    frames: dict[str, int] = {}
    feature_shape: tuple[int, ...] | None = None
    try:
        with h5py.File(tmp, "w", libver=_LIBVER) as dst:
            for path, meta in metas:
                with h5py.File(path, "r") as src:
                    for utt_id in meta["ids"]:
                        group = src[utt_id]
                        _copy_utterance(group, dst.require_group(utt_id))
                        shape = group["features"].shape
                        durations[utt_id] = float(group.attrs["duration_s"])
                        frames[utt_id] = int(shape[-2])
                        this_shape = shape[:-2] + shape[-1:]
                        if feature_shape is not None and this_shape != feature_shape:
                            raise OfactlError(f"{path.name}: features of {utt_id!r} have shape {shape}, other "
                                              f"utterances {feature_shape} per frame", hint="were the parts written by one model?")
                        feature_shape = this_shape
                _stage("merge:copied-part")
            for key, value in attrs.items():
                _set_attr(dst.attrs, key, value)
            ids = sorted(owner)
            total_frames = sum(frames[i] for i in ids)
            total_duration_s = math.fsum(durations[i] for i in ids)  # exact: independent of order
            skip_list = [skipped[i] for i in sorted(skipped)]
            dst.attrs["n_utterances"] = len(ids)
            dst.attrs["total_frames"] = total_frames
            dst.attrs["total_duration_s"] = total_duration_s
            if total_frames:
                dst.attrs["measured_period_ms"] = 1000.0 * total_duration_s / total_frames
            if feature_shape is not None:
                dst.attrs["feature_dim"] = int(feature_shape[-1])
            dst.attrs["skipped"] = json.dumps(skip_list)
            dst.attrs["n_skipped"] = len(skip_list)
            dst.attrs["dtype"] = dtype
            dst.attrs["run_fingerprint"] = run_dir.name
            dst.attrs["format"] = FORMAT
            dst.attrs["format_version"] = FORMAT_VERSION
            dst.attrs.setdefault("ofactl_version", __version__)
            dst.attrs.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        # Mark it complete only once everything else is on disk (a file closed
        # cleanly), so that no partially flushed file can carry the mark.
        _fsync_file(tmp)
        with h5py.File(tmp, "r+") as dst:
            dst.attrs["complete"] = True
        _fsync_file(tmp)
    except OSError as err:
        raise OfactlError(f"cannot write {tmp}: {err.strerror or err}") from None
    _stage("merge:tmp-written")
    _atomic_write_text(run_dir / _MERGED, run_dir.name + "\n")  # from here on OUT.h5.tmp is final
    _stage("merge:marked")
    os.replace(tmp, out)
    _fsync_dir(out.parent)
    _stage("merge:replaced")
    _discard(run_dir)
    try:
        root.rmdir()
    except OSError:
        pass
    return _summary(out, read_attrs(out))


def _summary(out: Path, attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": str(out),
        "n_utterances": attrs.get("n_utterances", 0),
        "n_skipped": attrs.get("n_skipped", 0),
        "total_frames": attrs.get("total_frames", 0),
        "total_duration_s": attrs.get("total_duration_s", 0.0),
        "measured_period_ms": attrs.get("measured_period_ms"),
    }


# --------------------------------------------------------------------------- reading


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
        raise OfactlError(f"{p} is not a readable HDF5 file ({_first_line(err)})", hint=unreadable_hint) from None
    try:
        try:
            keys = set(f.attrs.keys())
            fmt, complete = f.attrs.get("format"), bool(f.attrs.get("complete", False))
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            raise OfactlError(f"{p} is not a readable HDF5 file ({_first_line(err)})", hint=unreadable_hint) from None
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
        raise OfactlError(f"{path} is not a readable HDF5 file ({_first_line(err)})") from None
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
