"""The crash-safe, resumable, rank-sharded writer of feature files (see :mod:`ofactl.features`)."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ofactl.atomic import atomic_write_text as _atomic_write_text
from ofactl.atomic import fsync_dir as _fsync_dir
from ofactl.data.problems import Problem
from ofactl.errors import OfactlError
from ofactl.features.files import (
    _ATTRS_FILE,
    _DEFAULT_PART_BYTES,
    _DTYPES,
    _LIBVER,
    _PART_META,
    Record,
    _check_id,
    _describe_difference,
    _discard,
    _fingerprint,
    _normalise_attrs,
    _part_files,
    _python,
    _read_json,
    _read_part_meta,
    _recover,
    _run_dirs,
    _write_error,
    _write_group,
    parts_dir,
)
from ofactl.features.merging import merge
from ofactl.features.reader import is_complete, read_attrs

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

    def skip(self, problem: Problem, key: str | None = None) -> None:
        """Record an input that could not be used (under ``key``, default ``problem.id``); it is listed in the
        file's ``skipped``."""
        if self.closed:
            raise ValueError("skip() on a closed FeatureWriter")
        utt_id = _check_id(key if key is not None else problem.id)
        if utt_id in self.done_ids:
            raise ValueError(f"utterance id {utt_id!r} was already written or skipped")
        self._skips.append(problem.to_record(utt_id))
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
