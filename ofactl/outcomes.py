"""Per-utterance test outcomes: what a probe run scored on each test utterance, kept beside the results table.

A results row says "accuracy 0.81"; its outcomes file says which utterances
were right.  With it, any two runs on the same test set can be compared
pairwise (:func:`ofactl.stats.paired_difference`, ``ofactl compare``) and a
row's interval recomputed or pooled over seeds.

An :class:`Outcomes` holds the utterance (or query) ids and, per id, the
sufficient statistics of the task's metrics (what the task's ``finish`` sums):

=========================  ===================================================
task                       statistics per utterance
=========================  ===================================================
ks, ic, sid, er            ``correct`` (0/1), ``n`` (1)
pr                         ``errors`` (phone edits), ``ref`` (reference phones)
asr                        ``word_errors``, ``words``, ``char_errors``, ``chars``
sf                         ``f1_sum`` (the utterance's slot-type F1), ``n``,
                           ``value_errors``, ``value_chars``
qbe (per query)            ``twv_curve`` (the query's TWV term at each
                           candidate threshold), ``twv_at_dev`` (at the dev
                           threshold), ``n`` (1)
=========================  ===================================================

Files are NumPy ``.npz`` archives (``ids``, one array per statistic named
``stat:<name>``, and ``meta``, a JSON string), read without pickle, written
atomically under ``<results stem>.outcomes/`` next to the results CSV; a
row's ``outcomes`` column holds the file's path relative to the CSV's folder.
Each run writes a new file (a unique name), so a re-run never changes the
outcomes an older row points to.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ofactl.errors import OfactlError

FORMAT_VERSION = 1
SUFFIX = ".npz"


@dataclass
class Outcomes:
    """Per-utterance statistics of one run on one test set.

    Attributes:
        task: the task name (its ``finish`` turns summed statistics into metrics).
        ids: utterance (query) ids, unique.
        stats: ``{name: array}``, first axis one entry per id.
        meta: free-form provenance (model, split, seed, period ...), stored as JSON.
    """

    task: str
    ids: list[str]
    stats: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("outcome ids must be unique")
        self.stats = {k: np.asarray(v, dtype=np.float64) for k, v in self.stats.items()}
        for name, value in self.stats.items():
            if value.ndim == 0 or value.shape[0] != len(self.ids):
                raise ValueError(f"statistic {name!r} has shape {value.shape}, expected ({len(self.ids)}, ...)")

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, ids: Sequence[str]) -> "Outcomes":
        """These outcomes for ``ids`` only, in that order (every id must be present)."""
        index = {u: i for i, u in enumerate(self.ids)}
        missing = [u for u in ids if u not in index]
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in these outcomes, e.g. {missing[0]!r}")
        rows = np.fromiter((index[u] for u in ids), dtype=np.int64, count=len(ids))
        return Outcomes(self.task, list(ids), {k: v[rows] for k, v in self.stats.items()}, dict(self.meta))

    def metrics(self) -> dict[str, float]:
        """The task's metrics on these utterances (what the results row says)."""
        from ofactl.stats import metric_values
        from ofactl.tasks import get_task

        return {m.name: float(metric_values(self, m.name)[0]) for m in get_task(self.task).metrics}

    def to_frame(self):
        """A pandas DataFrame: ``id`` and every one-dimensional statistic (qbe's curves are left out)."""
        import pandas as pd

        columns = {"id": self.ids}
        columns.update({k: v for k, v in self.stats.items() if v.ndim == 1})
        return pd.DataFrame(columns)

    @staticmethod
    def concat(parts: Sequence["Outcomes"]) -> "Outcomes":
        """Outcomes of several batches of one run, in order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        names = list(parts[0].stats)
        return Outcomes(parts[0].task, [u for p in parts for u in p.ids],
                        {k: np.concatenate([p.stats[k] for p in parts]) for k in names}, dict(parts[0].meta))


def save_outcomes(path: str | Path, outcomes: Outcomes) -> Path:
    """Write ``outcomes`` to ``path`` atomically (parent folders created)."""
    from ofactl.atomic import atomic_write

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OfactlError(f"cannot create {path.parent}: {err.strerror or err}") from None
    meta = {"format_version": FORMAT_VERSION, "task": outcomes.task, **outcomes.meta}
    arrays = {"ids": np.asarray(outcomes.ids, dtype=np.str_), "meta": np.asarray(json.dumps(meta, sort_keys=True))}
    arrays.update({f"stat:{k}": v for k, v in outcomes.stats.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
    return path


def load_outcomes(path: str | Path) -> Outcomes:
    """Read an outcomes file (no pickle); one :class:`OfactlError` line when it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise OfactlError(f"outcomes file {path} not found",
                          hint="it is written next to the results table by `ofactl probe`/`sweep`; re-run the point")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            ids = [str(u) for u in data["ids"].tolist()]
            stats = {k[len("stat:"):]: np.array(data[k]) for k in data.files if k.startswith("stat:")}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise OfactlError(f"{path}: not an ofactl outcomes file ({type(err).__name__})",
                          hint="re-run the point to write it again") from None
    version = int(meta.pop("format_version", 0))
    if version > FORMAT_VERSION:
        raise OfactlError(f"{path}: written by a newer ofactl (outcomes format {version})", hint="upgrade ofactl")
    task = str(meta.pop("task", ""))
    try:
        return Outcomes(task, ids, stats, meta)
    except ValueError as err:
        raise OfactlError(f"{path}: inconsistent outcomes file ({err})", hint="re-run the point") from None


def outcomes_dir(results: str | Path) -> Path:
    """``<results stem>.outcomes/`` next to the results CSV."""
    results = Path(results)
    return results.with_name(results.stem + ".outcomes")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("_") or "x"


def new_outcomes_path(results: str | Path, model: str, task: str, point: str, seed: int, layer: str = "") -> Path:
    """A fresh file name for one run's outcomes (never reused: a unique suffix)."""
    layer_part = "" if layer in ("", "last") else f"-layer{layer}"
    name = f"{_slug(point)}-seed{seed}{layer_part}-{uuid.uuid4().hex[:10]}{SUFFIX}"
    return outcomes_dir(results) / _slug(model) / _slug(task) / name


def resolve_outcomes_path(results: str | Path, reference: str) -> Path:
    """A row's ``outcomes`` value (relative to the results CSV's folder, or absolute) as a path."""
    ref = Path(reference)
    return ref if ref.is_absolute() else Path(results).absolute().parent / ref


__all__ = ["FORMAT_VERSION", "Outcomes", "load_outcomes", "new_outcomes_path", "outcomes_dir",
           "resolve_outcomes_path", "save_outcomes"]
