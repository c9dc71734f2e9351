"""The results table: one long-format CSV shared by probes, sweeps, profiles and plots.

One row per (model, task, split, target period, metric, seed); the columns are
:data:`COLUMNS` (DESIGN.md's contract plus ``schema_version``, ``lr`` and
``layer``).  :func:`append_rows` holds an exclusive file lock
(``fcntl.flock`` on ``<file>.lock``) while it appends and fsyncs, so any
number of processes may append to one file at once without lost or torn rows.
:func:`read_results` validates the file and lets a re-run supersede older rows
with the same key (the newest ``created_at`` wins).
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ofactl.errors import OfactlError

SCHEMA_VERSION = 1
STATUSES = ("ok", "infeasible", "failed")
#: What makes two rows "the same measurement"; a later row supersedes an earlier one.
KEY = ("model", "task", "split", "target_period_ms", "lambda_key", "metric", "seed")


@dataclass
class ResultRow:
    """One measurement.  ``value`` is NaN for infeasible/failed rows (with a ``note``)."""

    model: str
    task: str
    metric: str
    value: float
    higher_is_better: bool
    split: str = "test"
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
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    ofactl_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, found {self.status!r}")
        if not self.ofactl_version:
            from ofactl import __version__

            self.ofactl_version = __version__

    def to_csv_dict(self) -> dict[str, str]:
        d = asdict(self)
        d["lambda"] = d.pop("lam")
        return {k: _fmt(d[k]) for k in COLUMNS}


#: Column order in the CSV.
COLUMNS = ["model", "model_sha256", "task", "split", "lambda", "target_period_ms", "measured_period_ms", "metric",
           "value", "higher_is_better", "status", "note", "seed", "n_utterances", "macs_per_second", "lr", "layer",
           "created_at", "ofactl_version", "schema_version"]
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


def append_rows(path: str | Path, rows: Iterable[ResultRow]) -> int:
    """Append ``rows`` to the CSV at ``path`` under an exclusive lock; write the header if new.

    Returns the number of rows written.  Safe for concurrent writers (processes
    or threads): each call writes whole rows in one ``write`` while it holds
    the lock, then fsyncs.
    """
    rows = list(rows)
    if not rows:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    for row in rows:
        writer.writerow(row.to_csv_dict())
    payload = buf.getvalue()
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            new = not path.exists() or path.stat().st_size == 0
            with open(path, "a", newline="") as f:
                if new:
                    f.write(",".join(COLUMNS) + "\n")
                elif not _ends_with_newline(path):
                    f.write("\n")  # a torn last line from a killed writer stays isolated
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return len(rows)


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
    if not path.is_file():
        raise OfactlError(f"results file {path} not found", hint="run `ofactl sweep` or `ofactl probe` first")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="skip", engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise OfactlError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
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
    numeric = ["value", "lambda", "target_period_ms", "measured_period_ms", "macs_per_second", "lr", "seed",
               "n_utterances"]
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
    df["lambda_key"] = df["lambda"].round(6)
    if supersede and len(df):
        df = df.sort_values("created_at", kind="stable")
        df = df.drop_duplicates(subset=list(KEY), keep="last")
    return df.drop(columns=["lambda_key"]).reset_index(drop=True)


__all__ = ["COLUMNS", "KEY", "ResultRow", "SCHEMA_VERSION", "STATUSES", "append_rows", "read_results"]

