"""The results table: one long-format CSV shared by probes, sweeps, profiles and plots.

One row per (model, task, split, target period, metric, seed); the columns are
:data:`COLUMNS` (the design's contract plus ``schema_version``, ``lr``,
``layer`` and ``variant``).  Writers never share a file: each writes its rows
as a small CSV of its own under ``<file>.pending/`` (atomic rename), and one
merger at a time appends pending rows to the table under an exclusive-creation
lock that works on NFS (:func:`merge_pending`); readers read the table and the
pending rows together.  So any number of processes, on one host or many
sharing a network file system, may add rows at once without lost or torn rows,
and nothing depends on ``flock``.
:func:`read_results` validates the file and lets a re-run supersede older rows
with the same key (:data:`KEY`; the newest ``created_at`` wins).

Schema 2 (ofactl 0.2) added ``ci_low``/``ci_high`` (the 95% bootstrap
interval of an ``ok`` test row, see :mod:`ofactl.stats`), ``outcomes`` (the
row's per-utterance outcomes file, relative to the CSV's folder, see
:mod:`ofactl.outcomes`) and ``variant`` (``""`` for the model at a period or
lambda, ``avgpool`` for the average-pooling baseline, ``uniform`` for fixed-length
pooling inside the model, ``learned-init<X>[-penalty<W>]`` for a learned lambda).  A schema-1 table stays readable: its intervals are
unknown (NaN), its variant is derived from the model name and note, and the
first append of schema-2 rows rewrites it atomically with the new header.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ofactl.errors import OfactlError

SCHEMA_VERSION = 2
STATUSES = ("ok", "infeasible", "failed")
#: What makes two rows "the same measurement"; a later row supersedes an earlier one.
KEY = ("model", "task", "split", "target_period_ms", "lambda_key", "layer", "variant", "metric", "seed", "precision")
#: ``variant`` of the average-pooling baseline, of fixed-length pooling inside the model, and the prefix of a
#: learned lambda's
AVGPOOL = "avgpool"
UNIFORM = "uniform"
LEARNED = "learned"
#: ``variant`` of rows that are not an OFA model's own: a fixed-rate baseline, and a previous work's numbers (rows a
#: user adds by hand to draw them beside the OFA lines; ``plot`` draws them as points, not lines)
BASELINE = "baseline"
PREVIOUS = "previous"


def learned_variant(lam_init: float, rate_penalty: float = 0.0) -> str:
    """The ``variant`` of a learned-lambda run: ``learned-init<X>`` (``-penalty<W>`` with a rate penalty)."""
    return f"{LEARNED}-init{lam_init:.4g}" + (f"-penalty{rate_penalty:g}" if rate_penalty else "")


@dataclass
class ResultRow:
    """One measurement.  ``value`` is NaN for infeasible/failed rows (with a ``note``)."""

    model: str
    task: str
    metric: str
    value: float
    higher_is_better: bool
    split: str = "test"
    ci_low: float | None = None
    ci_high: float | None = None
    model_sha256: str = ""
    lam: float | None = None
    target_period_ms: float | None = None
    measured_period_ms: float | None = None
    status: str = "ok"
    note: str = ""
    seed: int = 0
    n_utterances: int = 0
    macs_per_second: float | None = None
    lr: float | None = None
    layer: str = ""
    variant: str = ""
    precision: str = "fp32"  # of the model's forward (ofactl.precision): fp32 or bf16
    outcomes: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    ofactl_version: str = ""
    schema_version: int = SCHEMA_VERSION
    #: the per-utterance outcomes behind the row, written beside the table by :func:`append_rows` (not a column)
    per_utterance: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, found {self.status!r}")
        if not self.ofactl_version:
            from ofactl import __version__

            self.ofactl_version = __version__

    def to_csv_dict(self) -> dict[str, str]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_utterance"}
        d["lambda"] = d.pop("lam")
        return {k: _fmt(d[k]) for k in COLUMNS}


#: Column order in the CSV.
COLUMNS = ["model", "model_sha256", "task", "split", "lambda", "target_period_ms", "measured_period_ms", "metric",
           "value", "ci_low", "ci_high", "higher_is_better", "status", "note", "seed", "n_utterances",
           "macs_per_second", "lr", "layer", "variant", "precision", "outcomes", "created_at", "ofactl_version",
           "schema_version"]
REQUIRED = ["model", "task", "split", "lambda", "target_period_ms", "measured_period_ms", "metric", "value",
            "higher_is_better", "status", "seed", "created_at"]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return " ".join(str(value).split())  # one line per row, always


def save_row_outcomes(path: str | Path, rows: list[ResultRow]) -> None:
    """Write each row's ``per_utterance`` outcomes next to the table at ``path`` and point ``row.outcomes`` at them.

    Rows sharing one :class:`~ofactl.outcomes.Outcomes` (the metrics of one
    run) share one file.  Written before the rows, so a row never points to a
    file that is not there.
    """
    from ofactl.outcomes import new_outcomes_path, save_outcomes

    written: dict[int, str] = {}
    path = Path(path).absolute()
    base = path.parent
    for row in rows:
        if row.per_utterance is None or row.outcomes:
            continue
        key = id(row.per_utterance)
        if key not in written:
            point = (f"{row.target_period_ms:g}ms" if row.target_period_ms is not None
                     else f"lam{row.lam:.6g}" if row.lam is not None else "point")
            if row.variant:
                point = f"{row.variant}-{point}"
            target = new_outcomes_path(path, row.model, row.task, point, row.seed, row.layer)
            save_outcomes(target, row.per_utterance)
            written[key] = target.relative_to(base).as_posix()
        row.outcomes = written[key]


def pending_dir(path: str | Path) -> Path:
    """Where writers leave their rows before they are merged into the table at ``path``: ``<file>.pending/``."""
    path = Path(path)
    return path.with_name(path.name + ".pending")


def _lock(path: Path, timeout: float):
    """The table's merge lock: an exclusive-creation marker (``filelock.SoftFileLock``), which works on NFS,
    where ``flock`` may not; a holder that died on this host is detected and its lock reclaimed."""
    from filelock import SoftFileLock

    return SoftFileLock(str(path.with_name(path.name + ".merge-lock")), timeout=timeout)


def write_pending(path: str | Path, rows: Iterable[ResultRow]) -> Path | None:
    """Write ``rows`` as one small CSV of their own in :func:`pending_dir` (atomically, under a unique name).

    Any number of processes on any number of hosts may do this at once: no
    lock is taken, and a file appears whole or not at each rename.  The rows
    count as written from then on (:func:`read_results` reads pending files
    too); :func:`merge_pending` moves them into the table.  Each row's
    per-utterance outcomes are saved first (:func:`save_row_outcomes`).
    Returns the file, or None for no rows.
    """
    import socket
    import uuid

    from ofactl.atomic import atomic_write_text

    rows = list(rows)
    if not rows:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_row_outcomes(path, rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_csv_dict())
    folder = pending_dir(path)
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"
    target = folder / f"{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}.csv"
    atomic_write_text(target, buf.getvalue(), make_dirs=True)  # a merger may remove the empty folder meanwhile
    return target


def merge_pending(path: str | Path, timeout: float = 60.0) -> int:
    """Append the pending rows of the table at ``path`` to it, oldest file first; returns the rows merged.

    Holds the table's merge lock (:func:`_lock`); appends and fsyncs the
    table, then deletes the pending files it merged.  A kill in between
    leaves rows both in the table and pending: merged again later, the copies
    are identical and :func:`read_results` drops them.  When the lock cannot
    be had within ``timeout`` seconds nothing is merged and nothing is lost:
    the rows stay pending, are read from there, and the next merge takes them.
    """
    from filelock import Timeout

    path = Path(path)
    folder = pending_dir(path)
    if not folder.is_dir():
        return 0
    try:
        with _lock(path, timeout):
            files = sorted((f for f in folder.glob("*.csv") if not f.name.startswith(".")),
                           key=lambda f: (f.stat().st_mtime_ns, f.name))
            if not files:
                return 0
            payload, count = [], 0
            for f in files:
                lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
                body = [line for line in lines[1:] if line.strip()]
                payload += body
                count += len(body)
            new = not path.exists() or path.stat().st_size == 0
            if not new:
                _upgrade_header(path)
            try:
                with open(path, "a", newline="", encoding="utf-8") as out:
                    if new:
                        out.write(",".join(COLUMNS) + "\n")
                    elif not _ends_with_newline(path):
                        out.write("\n")  # a torn last line from a killed writer stays isolated
                    out.write("".join(payload))
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as err:
                raise OfactlError(f"cannot write {path}: {err.strerror or err}",
                                  hint=f"its rows are safe in {folder}; free space and run again") from None
            from ofactl import faults
            from ofactl.atomic import fsync_dir

            faults.point("results-merge")
            for f in files:
                f.unlink(missing_ok=True)

            fsync_dir(folder)
            return count
    except Timeout:
        return 0


def append_rows(path: str | Path, rows: Iterable[ResultRow]) -> int:
    """Add ``rows`` to the table at ``path``: :func:`write_pending`, then :func:`merge_pending`.

    Safe for any number of concurrent writers, on one host or several
    sharing a network file system: writers never write the same file, and
    the table is appended to by one merger at a time.  Returns the number of
    rows written (durable when this returns, merged into the CSV unless
    another merger held the table for longer than the timeout).
    """
    rows = list(rows)
    if not rows:
        return 0
    write_pending(path, rows)
    merge_pending(path)
    return len(rows)


def _upgrade_header(path: Path) -> None:
    """Rewrite a table whose header is not today's :data:`COLUMNS` (caller holds the merge lock): same rows, new
    columns."""
    from ofactl.atomic import atomic_write_text

    with open(path, newline="", encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split(",")
        if header == COLUMNS:
            return
        if "model" not in header or "metric" not in header:
            raise OfactlError(f"{path}: not an ofactl results table (header {','.join(header[:4])}...)",
                              hint="append to a new file with --results")
        f.seek(0)
        reader = csv.DictReader(f)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for record in reader:
            if None in record:  # a torn or over-long line: keep what is known
                record.pop(None)
            writer.writerow({c: record.get(c) or "" for c in COLUMNS})
    atomic_write_text(path, out.getvalue())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_results(path: str | Path, supersede: bool = True, warn=None):
    """Read and validate a results CSV into a pandas DataFrame.

    Missing required columns or a newer schema is one OfactlError line; rows
    that do not parse (a torn line, an unknown status, a non-numeric value)
    are dropped and reported through ``warn(message)`` (default: ignored).
    With ``supersede`` only the newest row per :data:`KEY` is kept.
    """
    import pandas as pd

    path = Path(path)
    pending = sorted(pending_dir(path).glob("*.csv")) if pending_dir(path).is_dir() else []
    if not path.is_file() and not pending:
        raise OfactlError(f"results file {path} not found", hint="run `ofactl sweep` or `ofactl probe` first")
    frames = []
    # pending files before the table: a file merged meanwhile is then read from the table (or twice: deduplicated)
    for f in pending:
        try:
            frames.append(pd.read_csv(f, dtype=str, keep_default_na=False, on_bad_lines="skip", engine="python"))
        except FileNotFoundError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            if warn is not None:
                warn(f"{f}: not a readable CSV: skipped")
    if path.is_file():
        try:
            frames.insert(0, pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="skip", engine="python"))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise OfactlError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    df = df.drop_duplicates(ignore_index=True)  # a row merged and still pending (a merge killed half-way)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise OfactlError(f"{path}: missing column(s) {', '.join(missing)}",
                          hint="is this an ofactl results table? columns: " + ", ".join(COLUMNS))
    if "schema_version" in df.columns:
        versions = pd.to_numeric(df["schema_version"], errors="coerce")
        if (versions > SCHEMA_VERSION).any():
            raise OfactlError(f"{path}: written by a newer ofactl (schema {int(versions.max())})",
                              hint="upgrade ofactl to read it")
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = ""
    bad = pd.Series(False, index=df.index)
    numeric = ["value", "ci_low", "ci_high", "lambda", "target_period_ms", "measured_period_ms", "macs_per_second",
               "lr", "seed", "n_utterances"]
    for column in numeric:
        text = df[column].str.strip()
        converted = pd.to_numeric(text.replace("", "nan"), errors="coerce")
        bad |= converted.isna() & ~text.str.lower().isin(["", "nan"])
        df[column] = converted
    bad |= ~df["status"].isin(STATUSES)
    bad |= ~df["higher_is_better"].str.lower().isin(["true", "false"])
    bad |= (df["status"] == "ok") & df["value"].isna()
    if bad.any() and warn is not None:
        warn(f"{path}: skipped {int(bad.sum())} malformed row(s) (lines {', '.join(str(i + 2) for i in df.index[bad][:5])}"
             f"{'...' if int(bad.sum()) > 5 else ''})")
    df = df[~bad].copy()
    df["higher_is_better"] = df["higher_is_better"].str.lower() == "true"
    df["seed"] = df["seed"].fillna(0).astype(int)
    df["n_utterances"] = df["n_utterances"].fillna(0).astype(int)
    df["variant"] = _variants(df)
    df["precision"] = df["precision"].replace("", "fp32")  # rows from before the column were all fp32
    # a learned lambda is a result, not a setting: its run is identified by its variant (initial lambda)
    df["lambda_key"] = df["lambda"].round(6).where(~df["variant"].str.startswith(LEARNED))
    if supersede and len(df):
        df = df.sort_values("created_at", kind="stable")
        df = df.drop_duplicates(subset=list(KEY), keep="last")
    return df.drop(columns=["lambda_key"]).reset_index(drop=True)


def _variants(df) -> "Any":
    """The ``variant`` column, derived where it is empty: model ``+avgpool``; note ``learned lambda (init X ...``;
    and, for rows without schema 2 (written before the variant column, or typed by hand without a
    ``schema_version``), a note saying "previous work"/"prior work" or "baseline".  ofactl's own rows always carry
    their variant; nothing else reads the note."""
    import re

    variant = df["variant"].fillna("").astype(str)
    missing = variant == ""
    if missing.any():
        model = df["model"].astype(str)
        note = df["note"].fillna("").astype(str)
        pooled = missing & model.str.endswith("+" + AVGPOOL)
        variant = variant.where(~pooled, AVGPOOL)
        for i in df.index[missing & note.str.startswith("learned lambda")]:
            init = re.search(r"init ([0-9.eE+-]+)", note[i])
            penalty = re.search(r"rate penalty ([0-9.eE+-]+)", note[i])
            variant[i] = learned_variant(float(init.group(1)) if init else float("nan"),
                                         float(penalty.group(1)) if penalty else 0.0)
        # rows from before the variant column (schema 1, or typed by hand without a schema_version): the note
        # said what they were
        import pandas as pd

        schema = pd.to_numeric(df["schema_version"], errors="coerce") if "schema_version" in df.columns else None
        legacy = variant == ""
        if schema is not None:
            legacy &= ~(schema >= 2)
        lowered = note.str.lower()
        previous = legacy & (lowered.str.contains("previous", regex=False) | lowered.str.contains("prior work",
                                                                                                 regex=False))
        variant = variant.where(~previous, PREVIOUS)
        variant = variant.where(~(legacy & ~previous & lowered.str.contains("baseline", regex=False)), BASELINE)
    return variant


__all__ = ["AVGPOOL", "BASELINE", "PREVIOUS", "UNIFORM", "COLUMNS", "KEY", "LEARNED", "ResultRow", "SCHEMA_VERSION", "STATUSES", "append_rows",
           "learned_variant", "merge_pending", "pending_dir", "read_results", "save_row_outcomes", "write_pending"]

