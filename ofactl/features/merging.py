"""The merge of a run's part files into ``OUT.h5`` (see :mod:`ofactl.features` for its crash windows)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py

from ofactl import __version__
from ofactl.atomic import atomic_write_text as _atomic_write_text
from ofactl.atomic import fsync_dir as _fsync_dir
from ofactl.atomic import fsync_file as _fsync_file
from ofactl.errors import OfactlError
from ofactl.features import files
from ofactl.features.files import (
    _ATTRS_FILE,
    _LIBVER,
    _MERGED,
    FORMAT,
    FORMAT_VERSION,
    _copy_utterance,
    _discard,
    _part_files,
    _read_json,
    _read_part_meta,
    _recover,
    _run_dirs,
    _set_attr,
    _tmp_path,
    parts_dir,
)
from ofactl.features.reader import is_complete, read_attrs


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
                files._stage("merge:copied-part")
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
    files._stage("merge:tmp-written")
    _atomic_write_text(run_dir / _MERGED, run_dir.name + "\n")  # from here on OUT.h5.tmp is final
    files._stage("merge:marked")
    os.replace(tmp, out)
    _fsync_dir(out.parent)
    files._stage("merge:replaced")
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
