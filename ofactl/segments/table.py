"""The segment table: strictly increasing end frames per utterance, its file format and its checks."""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ofactl.data.problems import Problem
from ofactl.period import FRAME_MS
from ofactl.errors import OfactlError

FRAME_PERIOD_MS = round(FRAME_MS)  # the header says "20"
WINDOW_SAMPLES = 400
#: Longest segment :func:`dp_segment` forms (50 frames = 1 s; longer stretches,
#: e.g. long silences, are split).  Phones are far shorter; the cap bounds the
#: DP's cost at ``O(T * MAX_SEGMENT_FRAMES * K)``.
MAX_SEGMENT_FRAMES = 50
#: Default ``lambda_dp`` (REFERENCE.md: smoothing levels 25-35; larger -> longer segments).
DEFAULT_SMOOTHING = 30.0

_MAGIC = "# ofactl-segments"
_VERSION = "v1"


# --------------------------------------------------------------------------------------------- table


def _check_ends(ends: Any, where: str) -> np.ndarray:
    arr = np.asarray(ends)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or
                             (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
        raise OfactlError(f"{where}: segment ends must be a 1-D list of integer frames, found {arr!r}"[:300])
    arr = arr.astype(np.int64)
    if arr[0] < 0:
        raise OfactlError(f"{where}: segment end frames must be >= 0, found {int(arr[0])}")
    if arr.size > 1 and np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0))
        raise OfactlError(f"{where}: segment end frames must be strictly increasing, found {int(arr[i])} "
                          f"then {int(arr[i + 1])}")
    arr.setflags(write=False)
    return arr


def _check_id(utt: Any) -> str:
    if not isinstance(utt, str) or not utt:
        raise OfactlError(f"utterance ids must be non-empty strings, found {utt!r}")
    if any(c in utt for c in "\t\n\r") or utt.startswith("#"):
        raise OfactlError(f"utterance id {utt!r} cannot be stored in a segment file",
                          hint="ids must not contain tabs or line breaks, nor start with '#'")
    return utt


class SegmentTable(Mapping[str, np.ndarray]):
    """Segment end frames per utterance id (a read-only mapping ``id -> int64 array``).

    Args:
        segments: ``{id: end frames}``; each strictly increasing, >= 0.
        source: where the segments come from (``hubert-codes``, ``tsv:file.tsv``, ...).
        meta: more facts for the header (``smoothing``, ``layer``, ``n_clusters``, ...);
            values are stored as strings.
        problems: the inputs left out when the table was made (not saved with it).
    """

    frame_period_ms = FRAME_PERIOD_MS

    def __init__(self, segments: Mapping[str, Any] | None = None, *, source: str = "unknown",
                 meta: Mapping[str, Any] | None = None, problems: "list[Problem] | None" = None):
        self.problems: list[Problem] = list(problems or [])
        self._ends: dict[str, np.ndarray] = {}
        for utt, ends in (segments or {}).items():
            self._ends[_check_id(utt)] = _check_ends(ends, f"segments of {utt!r}")
        self.meta: dict[str, str] = {"source": str(source)}
        for key, value in (meta or {}).items():
            if not re.fullmatch(r"[A-Za-z_][\w.-]*", str(key)):
                raise OfactlError(f"segment table metadata keys must be identifiers, found {key!r}")
            if key == "frame_period_ms":
                continue
            self.meta[str(key)] = str(value)

    # --- mapping
    def __getitem__(self, utt: str) -> np.ndarray:
        return self._ends[utt]

    def __contains__(self, utt: object) -> bool:
        return utt in self._ends

    def __iter__(self) -> Iterator[str]:
        return iter(self._ends)

    def __len__(self) -> int:
        return len(self._ends)

    def __repr__(self) -> str:
        return f"SegmentTable({len(self)} utterances, source={self.source!r})"

    @property
    def source(self) -> str:
        return self.meta.get("source", "unknown")

    @property
    def smoothing(self) -> float | None:
        """The DP's ``lambda_dp`` when the segments were computed, else None."""
        value = self.meta.get("smoothing")
        return None if value is None else float(value)

    # --- statistics
    def mean_duration_ms(self) -> float:
        """Mean segment duration over all utterances (NaN when there is no segment).

        Equals ``20 ms * frames covered / segments`` (frames after an
        utterance's last end are not covered by any segment).
        """
        covered = sum(int(e[-1]) + 1 for e in self._ends.values() if e.size)
        count = sum(int(e.size) for e in self._ends.values())
        return FRAME_PERIOD_MS * covered / count if count else math.nan

    # --- cropping and batching
    def crop(self, utt: str, start_frame: int = 0, num_frames: int | None = None) -> np.ndarray:
        """The segments of ``utt`` inside the window ``[start_frame, start_frame + num_frames)``.

        The rule (REFERENCE.md: crop the segments with the same offset as the
        audio, ``offset_frames = start_sample / 320``): ends are shifted by
        ``-start_frame``; a segment that lies entirely outside the window is
        dropped; a segment cut by a window edge keeps its part inside (a cut at
        the start keeps its end, a cut at the end gets end ``num_frames - 1``).
        A cut segment still counts as one segment (the guidance loss asks it
        to integrate to 1 over its remaining frames).  Frames of the window
        after the utterance's last end stay uncovered.

        Args:
            utt: the utterance id.
            start_frame: first frame of the window (>= 0).
            num_frames: frames in the window (None: to the end of the segments).

        Returns:
            int64 end frames relative to ``start_frame``, strictly increasing,
            all in ``[0, num_frames)``.
        """
        if utt not in self._ends:
            raise OfactlError(f"no segments for utterance {utt!r}",
                              hint="compute or import segments for the same data (ofactl segment)")
        start = int(start_frame)
        if start < 0 or (num_frames is not None and int(num_frames) < 0):
            raise ValueError(f"crop window must have start >= 0 and num_frames >= 0, found {start_frame}, {num_frames}")
        rel = self._ends[utt] - start
        rel = rel[rel >= 0]
        if num_frames is not None:
            last = int(num_frames) - 1
            keep = np.concatenate([[True], rel[:-1] < last]) if rel.size else rel.astype(bool)
            rel = np.minimum(rel[keep], last)
            rel = rel[rel >= 0]
        return rel.astype(np.int64)

    def batch(self, ids: Sequence[str], crops: Sequence[tuple[int, int] | None] | None = None, *,
              strict: bool = False) -> tuple[Any, Any]:
        """Padded segments of a batch, for :func:`ofactl.distill.guidance_loss`.

        Args:
            ids: utterance ids in batch order.
            crops: per utterance ``(start_frame, num_frames)`` (see :meth:`crop`)
                or None (uncropped); None for the whole batch: all uncropped.
            strict: an id without segments is an error; otherwise it gets
                ``count = 0`` (no guidance for that utterance).

        Returns:
            ``(segment_ends (batch, K_max) int64, counts (batch,) int64)`` torch
            tensors; padding is ``-1``.
        """
        import torch

        if crops is None:
            crops = [None] * len(ids)
        if len(crops) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(crops)} crops")
        rows = []
        for utt, window in zip(ids, crops):
            if utt not in self._ends:
                if strict:
                    raise OfactlError(f"no segments for utterance {utt!r}",
                                      hint="compute or import segments for the same data (ofactl segment)")
                rows.append(np.zeros(0, dtype=np.int64))
            elif window is None:
                rows.append(self._ends[utt])
            else:
                rows.append(self.crop(utt, int(window[0]), int(window[1])))
        k_max = max((r.size for r in rows), default=0)
        ends = torch.full((len(rows), k_max), -1, dtype=torch.long)
        for b, r in enumerate(rows):
            ends[b, : r.size] = torch.from_numpy(np.array(r, dtype=np.int64))
        counts = torch.tensor([r.size for r in rows], dtype=torch.long)
        return ends, counts

    # --- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the table (atomically: a temporary file renamed over ``path``)."""
        path = Path(path)
        meta = {"source": self.source, "frame_period_ms": str(FRAME_PERIOD_MS)}
        meta.update({k: v for k, v in self.meta.items() if k != "source"})
        header = " ".join([_MAGIC, _VERSION] + [f"{k}={urllib.parse.quote(v, safe='')}" for k, v in meta.items()])
        lines = [header]
        for utt, ends in self._ends.items():
            lines.append(f"{_check_id(utt)}\t{' '.join(str(int(e)) for e in ends)}")
        text = "\n".join(lines) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except UnicodeEncodeError as exc:
            raise OfactlError(f"cannot write {path}: an utterance id is not valid unicode ({exc.reason})") from None
        except OSError as exc:
            raise OfactlError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SegmentTable:
        """Read a file written by :meth:`save`.  Every problem is one :class:`OfactlError` naming file and line."""
        path = Path(path)
        hint = "the file must come from `ofactl segment` (or SegmentTable.save)"
        try:
            with open(path, encoding="utf-8", newline=None) as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            raise OfactlError(f"segment file not found: {path}", hint="make one with `ofactl segment`") from None
        except UnicodeDecodeError:
            raise OfactlError(f"{path}: not a text file (not UTF-8)", hint=hint) from None
        except OSError as exc:
            raise OfactlError(f"cannot read {path}: {exc.strerror or exc}") from None
        head = lines[0].split()
        if lines[0].startswith("\ufeff"):
            head = lines[0][1:].split()
        if head[:2] != _MAGIC.split():
            raise OfactlError(f"{path}:1: not an ofactl segment file (expected a '{_MAGIC} {_VERSION} ...' header)",
                              hint=hint)
        if len(head) < 3 or head[2] != _VERSION:
            found = head[2] if len(head) > 2 else "none"
            raise OfactlError(f"{path}:1: unsupported segment file version {found} (this ofactl reads {_VERSION})",
                              hint="upgrade ofactl or recompute the segments")
        meta: dict[str, str] = {}
        for token in head[3:]:
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise OfactlError(f"{path}:1: bad header field {token!r} (expected key=value)", hint=hint)
            meta[key] = urllib.parse.unquote(value)
        if meta.get("frame_period_ms", str(FRAME_PERIOD_MS)) != str(FRAME_PERIOD_MS):
            raise OfactlError(f"{path}:1: frame_period_ms={meta['frame_period_ms']}, ofactl uses {FRAME_PERIOD_MS} ms "
                              f"frames", hint="recompute the segments at 20 ms")
        table = cls(source=meta.pop("source", "unknown"), meta={k: v for k, v in meta.items()
                                                                if re.fullmatch(r"[A-Za-z_][\w.-]*", k)})
        for lineno, line in enumerate(lines[1:], start=2):
            if (not line.strip() and "\t" not in line) or line.startswith("#"):
                continue
            utt, sep, rest = line.partition("\t")
            if not sep or not utt:
                raise OfactlError(f"{path}:{lineno}: expected 'id<TAB>end frames', found {line[:80]!r}", hint=hint)
            try:
                ends = [int(tok) for tok in rest.split()]
            except ValueError:
                bad = next(tok for tok in rest.split() if not re.fullmatch(r"[+-]?\d+", tok))
                raise OfactlError(f"{path}:{lineno}: end frame {bad[:40]!r} of {utt!r} is not an integer",
                                  hint=hint) from None
            if utt in table._ends:
                raise OfactlError(f"{path}:{lineno}: utterance {utt!r} appears twice", hint=hint)
            try:
                table._ends[utt] = _check_ends(np.asarray(ends, dtype=np.int64), f"{path}:{lineno}: {utt!r}")
            except OfactlError as err:
                raise OfactlError(err.message, hint=hint) from None
        return table
