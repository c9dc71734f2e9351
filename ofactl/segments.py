"""Guidance segments for OFA pretraining: one table of segment END frames per utterance.

Frames are the CNN's 20 ms frames: frame ``t`` covers samples
``[320 t, 320 t + 400)`` of the 16 kHz utterance (window centre at
``(320 t + 200) / 16000`` s).  An utterance's segments are stored as strictly
increasing *inclusive* end frames ``e_1 < ... < e_K``; segment ``k`` covers
frames ``e_{k-1} + 1 .. e_k`` (``e_0 = -1``).  Frames after ``e_K`` belong to
no segment (no guidance target).

Where segments come from:

* :func:`compute_segments`: "HuBERT code" segments (Meng et al. 2022): k-means
  (:func:`fit_kmeans`, scikit-learn ``MiniBatchKMeans`` with fairseq's HuBERT
  label settings) on a teacher layer, then the duration-penalised dynamic
  programming segmentation of Kamper & van Niekerk 2021 (:func:`dp_segment`).
* :func:`import_alignments`: phone alignments (TSV, CTM, Praat TextGrid).

A :class:`SegmentTable` is saved as a small text file::

    # ofactl-segments v1 source=hubert-codes frame_period_ms=20 smoothing=30 ...
    utt-001<TAB>3 7 12 20
    utt-002<TAB>4 9

(header values are percent-encoded; ``#`` lines after the header are comments).
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ofactl.errors import OfactlError

__all__ = [
    "FRAME_PERIOD_MS",
    "HOP_SAMPLES",
    "WINDOW_SAMPLES",
    "MAX_SEGMENT_FRAMES",
    "SegmentTable",
    "fit_kmeans",
    "dp_segment",
    "compute_segments",
    "import_alignments",
    "time_to_end_frame",
]

FRAME_PERIOD_MS = 20
SAMPLE_RATE = 16_000
HOP_SAMPLES = 320
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
    """

    frame_period_ms = FRAME_PERIOD_MS

    def __init__(self, segments: Mapping[str, Any] | None = None, *, source: str = "unknown",
                 meta: Mapping[str, Any] | None = None):
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


# --------------------------------------------------------------------------------------------- k-means + DP


def _as_numpy(x: Any, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise OfactlError(f"{name} must have shape (frames, dim), found {arr.shape}")
    if not np.isfinite(arr).all():
        raise OfactlError(f"{name} contain NaN or Inf values")
    return arr


def fit_kmeans(
    features: Any,
    n_clusters: int = 100,
    seed: int = 0,
    *,
    batch_size: int = 10_000,
    max_iter: int = 100,
    n_init: int = 3,
) -> np.ndarray:
    """K-means centroids of ``features`` with scikit-learn's ``MiniBatchKMeans``.

    The settings are those of fairseq's HuBERT label recipe
    (``simple_kmeans/learn_kmeans.py``: k-means++ init scored on a subsample,
    ``batch_size=10000``, ``max_iter=100``, ``tol=0``,
    ``max_no_improvement=100``, no reassignment) except ``n_init``: 3 instead
    of 20 (measured on 2 CPU cores, 100k x 768 frames, 100 clusters: 69 s
    with 3 inits, 7.5 min with 20).

    Args:
        features: ``(frames, dim)`` numpy array or tensor.
        n_clusters: number of centroids (Meng et al.: 100).
        seed: makes the result deterministic.

    Returns:
        ``(n_clusters, dim)`` float32 centroids.
    """
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError:
        raise OfactlError("k-means needs scikit-learn, which is not installed",
                          hint="pip install scikit-learn") from None
    x = _as_numpy(features, "k-means features").astype(np.float32)
    if n_clusters < 1:
        raise OfactlError(f"n_clusters must be >= 1, found {n_clusters}")
    if x.shape[0] < n_clusters:
        raise OfactlError(f"k-means with {n_clusters} clusters needs at least {n_clusters} frames, found {x.shape[0]}",
                          hint="use more audio or fewer clusters")
    km = MiniBatchKMeans(
        n_clusters=n_clusters,
        init="k-means++",
        max_iter=max_iter,
        batch_size=min(batch_size, x.shape[0]),
        tol=0.0,
        max_no_improvement=100,
        n_init=n_init,
        reassignment_ratio=0.0,
        random_state=seed,
        compute_labels=False,
    )
    km.fit(x)
    return km.cluster_centers_.astype(np.float32)


def segment_costs(features: Any, centroids: Any, max_frames: int = MAX_SEGMENT_FRAMES) -> np.ndarray:
    """Quantisation cost of every segment: ``cost[L - 1, j] = min_c sum_{t=j-L+1..j} ||x_t - c||^2``.

    ``features (T, D)``, ``centroids (K, D)`` -> ``(min(max_frames, T), T)`` float64,
    ``inf`` where the segment would start before frame 0.  One vectorised pass
    per segment length over prefix sums of the squared distances.
    """
    x = _as_numpy(features, "features")
    c = _as_numpy(centroids, "centroids")
    if x.shape[1] != c.shape[1]:
        raise OfactlError(f"features have dim {x.shape[1]} but centroids {c.shape[1]}")
    t_len = x.shape[0]
    dist = (x * x).sum(1)[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    np.maximum(dist, 0.0, out=dist)
    prefix = np.zeros((t_len + 1, c.shape[0]))
    np.cumsum(dist, axis=0, out=prefix[1:])
    l_max = min(int(max_frames), t_len)
    cost = np.full((l_max, t_len), np.inf)
    for length in range(1, l_max + 1):
        # segment [j - L + 1, j] for j = L-1 .. T-1: prefix[j + 1] - prefix[j + 1 - L]
        cost[length - 1, length - 1:] = (prefix[length:] - prefix[: t_len + 1 - length]).min(axis=1)
    return cost


def dp_segment(features: Any, centroids: Any, smoothing: float = DEFAULT_SMOOTHING,
               max_frames: int = MAX_SEGMENT_FRAMES) -> np.ndarray:
    """Duration-penalised DP segmentation (Kamper & van Niekerk 2021).

    Minimises, over segmentations of the ``T`` frames into segments of
    ``1 .. max_frames`` frames, ``sum_segments [min_c sum_{t in seg} ||x_t - c||^2
    + smoothing * (1 - length)]``: each segment is quantised by its best
    centroid, and the duration term ``smoothing * (1 - length)`` rewards longer
    segments (larger ``smoothing`` -> fewer, longer segments; with 0 nothing
    rewards length and every frame is its own segment).  ``smoothing`` is on
    the scale of the squared distances of ``features``.  Vectorised per end frame: the DP step
    for end frame ``j`` is one ``argmin`` over the ``max_frames`` candidate
    lengths (ties: the shortest).

    Args:
        features: ``(T, D)`` one utterance's frames.
        centroids: ``(K, D)`` from :func:`fit_kmeans`.
        smoothing: ``lambda_dp`` (REFERENCE.md: 25-35 in Meng et al.).
        max_frames: the longest segment (default 50 frames = 1 s).

    Returns:
        int64 inclusive end frames, strictly increasing, the last one ``T - 1``
        (empty for ``T = 0``).
    """
    if max_frames < 1:
        raise OfactlError(f"max_frames must be >= 1, found {max_frames}")
    cost = segment_costs(features, centroids, max_frames)
    l_max, t_len = cost.shape
    if t_len == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.arange(1, l_max + 1)
    cost = cost + float(smoothing) * (1.0 - lengths)[:, None]
    best = np.zeros(t_len + 1)
    back = np.zeros(t_len + 1, dtype=np.int64)
    for j in range(t_len):
        n = min(l_max, j + 1)
        # candidate L = 1..n: best[j + 1 - L] + cost[L - 1, j]
        cand = best[j + 1 - n: j + 1][::-1] + cost[:n, j]
        i = int(np.argmin(cand))
        best[j + 1] = cand[i]
        back[j + 1] = i + 1
    ends = []
    j = t_len
    while j > 0:
        ends.append(j - 1)
        j -= int(back[j])
    return np.asarray(ends[::-1], dtype=np.int64)


def compute_segments(
    utterances: Sequence[Any],
    teacher: Any,
    *,
    layer: int = 6,
    n_clusters: int = 100,
    smoothing: float = DEFAULT_SMOOTHING,
    max_segment_frames: int = MAX_SEGMENT_FRAMES,
    kmeans_frames: int = 100_000,
    seed: int = 0,
    max_batch_s: float = 160.0,
    num_workers: int = 2,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "auto",
) -> SegmentTable:
    """HuBERT-code segments for a corpus: teacher features -> k-means -> DP.

    1. k-means: utterances are taken in a seeded random order until about
       ``kmeans_frames`` frames of ``layer`` features are collected (then a
       seeded subsample of exactly ``kmeans_frames`` if more), and
       :func:`fit_kmeans` runs on them.
    2. every utterance's ``layer`` features are segmented by :func:`dp_segment`.
       When step 1 already saw every utterance, its features are reused
       (a small corpus is read once); otherwise the corpus is read again.

    Args:
        utterances: objects with ``id``, ``path``, ``offset_s``, ``duration_s``
            (:class:`ofactl.data.corpora.Utterance` after ``probe``, or
            :class:`ofactl.data.batching.AudioItem`); ``duration_s`` None is read
            from the header.  Ids must be unique.
        teacher: a :class:`ofactl.teacher.Teacher` or a spec for :func:`~ofactl.teacher.load_teacher`.
        layer: teacher layer (Meng et al.: HuBERT layer 6).
        n_clusters, smoothing, max_segment_frames: see :func:`fit_kmeans`, :func:`dp_segment`.
        kmeans_frames: cap on the frames k-means sees.
        seed: k-means and subsampling seed.
        max_batch_s, num_workers: the audio loader (:func:`ofactl.data.batching.make_loader`).
        device: where the teacher runs (default: where its weights are).
        progress: called as ``progress(utterances_done, total)``; ``total``
            counts the k-means pass and the segmentation pass.

    Returns:
        A :class:`SegmentTable` (``source=hubert-codes``; metadata: layer,
        n_clusters, smoothing, max_segment_frames, kmeans_frames, seed, teacher,
        mean_duration_ms, skipped).  Unreadable files are left out and counted
        in ``meta["skipped"]``; their errors are in ``table.problems``.
    """
    import torch

    from ofactl.data.audio import audio_info
    from ofactl.data.batching import AudioItem, make_loader
    from ofactl.teacher import Teacher, load_teacher

    teacher_name = teacher if isinstance(teacher, (str, os.PathLike)) else type(teacher).__name__
    if not isinstance(teacher, Teacher):
        teacher = load_teacher(teacher, device=device or "cpu")
    run_device = torch.device(device) if device else next(teacher.parameters()).device
    teacher = teacher.to(run_device)
    from ofactl.precision import autocast, resolve_precision

    precision = resolve_precision(precision, run_device, teacher.config.embed_dim)  # the teacher's forward; k-means and the DP stay float
    if not 0 <= layer <= teacher.config.num_layers:
        raise OfactlError(f"teacher layer {layer} does not exist: the teacher has {teacher.config.num_layers} layers",
                          hint=f"pass a layer in [0, {teacher.config.num_layers}]")

    items: list[AudioItem] = []
    durations: list[float] = []
    seen: set[str] = set()
    problems: list[str] = []
    for u in utterances:
        if u.id in seen:
            raise OfactlError(f"utterance id {u.id!r} appears twice", hint="segments are keyed by id; ids must be unique")
        seen.add(u.id)
        _check_id(u.id)
        duration = u.duration_s
        if duration is None:
            try:
                duration = audio_info(u.path).duration_s - float(getattr(u, "offset_s", 0.0) or 0.0)
            except OfactlError as err:
                problems.append(str(err))
                continue
        items.append(AudioItem(u.id, str(u.path), float(getattr(u, "offset_s", 0.0) or 0.0), u.duration_s))
        durations.append(max(float(duration), 0.0))
    if not items:
        raise OfactlError("no readable utterances to segment", hint="check the corpus path")

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    frames_per_s = SAMPLE_RATE / HOP_SAMPLES
    chosen: list[int] = []
    estimate = 0.0
    for i in order:
        chosen.append(int(i))
        estimate += durations[i] * frames_per_s
        if estimate >= kmeans_frames:
            break
    reuse = len(chosen) == len(items)
    total = len(items) + (0 if reuse else len(chosen))
    done = 0
    if progress:
        progress(0, total)

    def features_of(indices: Sequence[int]) -> Iterator[tuple[str, np.ndarray]]:
        nonlocal done
        sub = [items[i] for i in indices]
        loader = make_loader(sub, [durations[i] for i in indices], max_batch_s=max_batch_s,
                             num_workers=num_workers)
        for batch in loader:
            for _, utt, err in batch.errors:
                problems.append(str(err))
            if batch.audio.shape[0]:
                with autocast(run_device, precision):
                    out = teacher(batch.audio.to(run_device), batch.lengths.to(run_device), layers=[layer])
                h = out.hidden_states[layer].float().cpu().numpy()
                for b, utt in enumerate(batch.ids):
                    yield utt, h[b, : int(out.lengths[b])]
            done += len(batch.ids) + len(batch.errors)
            if progress:
                progress(done, total)

    cached: dict[str, np.ndarray] = {}
    sample = []
    for utt, h in features_of(chosen):
        sample.append(h)
        if reuse:
            cached[utt] = h
    pool = np.concatenate(sample) if sample else np.zeros((0, teacher.config.embed_dim), dtype=np.float32)
    if pool.shape[0] > kmeans_frames:
        pool = pool[np.sort(rng.choice(pool.shape[0], size=kmeans_frames, replace=False))]
    centroids = fit_kmeans(pool, n_clusters=n_clusters, seed=seed)

    segments: dict[str, np.ndarray] = {}
    source = cached.items() if reuse else features_of(range(len(items)))
    for utt, h in source:
        segments[utt] = dp_segment(h, centroids, smoothing, max_segment_frames)
    # keep the corpus order
    ordered = {it.id: segments[it.id] for it in items if it.id in segments}
    table = SegmentTable(ordered, source="hubert-codes", meta={
        "layer": layer, "n_clusters": n_clusters, "smoothing": float(smoothing),
        "max_segment_frames": max_segment_frames, "kmeans_frames": int(pool.shape[0]), "seed": seed,
        "teacher": str(teacher_name), "skipped": len(problems),
    })
    table.meta["mean_duration_ms"] = f"{table.mean_duration_ms():.2f}"
    table.problems = problems  # type: ignore[attr-defined]
    if progress and done < total:
        progress(total, total)
    return table


# --------------------------------------------------------------------------------------------- alignments

FORMATS = ("tsv", "ctm", "textgrid")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: Tolerated overlap between consecutive intervals (float rounding in aligner output).
_OVERLAP_TOL_S = 1e-3


def time_to_end_frame(end_s: float) -> int:
    """The last 20 ms frame of an interval ending at ``end_s`` seconds.

    Rule: frame ``t`` belongs to the interval that contains its window centre
    ``(320 t + 200) / 16000`` s (a centre exactly on a boundary goes to the
    later interval), so the end frame is the last ``t`` with centre
    ``< end_s``: ``ceil((end_samples - 200) / 320) - 1`` with
    ``end_samples = round(16000 * end_s)``.  ``-1`` means no frame.
    """
    end_samples = int(round(float(end_s) * SAMPLE_RATE))
    return (end_samples - WINDOW_SAMPLES // 2 + HOP_SAMPLES - 1) // HOP_SAMPLES - 1


def _intervals_to_ends(intervals: list[tuple[float, float, str, str]], utt: str) -> np.ndarray:
    """``(start_s, end_s, label, where)`` of one utterance -> end frames.

    Intervals are sorted by start.  A gap between two intervals (or before the
    first) becomes a segment of its own, like a silence label; intervals that
    contain no frame centre (zero-length after the frame rule) merge into the
    following segment.  Frames after the last interval belong to no segment.
    """
    intervals = sorted(intervals, key=lambda iv: (iv[0], iv[1]))
    ends: list[int] = []
    prev_end = 0.0
    prev_where = ""
    for start, end, _label, where in intervals:
        if start < prev_end - _OVERLAP_TOL_S:
            raise OfactlError(f"{where}: interval {start:g}-{end:g} s of {utt!r} overlaps the previous one "
                              f"(ending at {prev_end:g} s, {prev_where})",
                              hint="alignments must not overlap (one tier, one channel)")
        if start > prev_end:
            ends.append(time_to_end_frame(start))  # the gap (unlabelled silence)
        ends.append(time_to_end_frame(end))
        prev_end, prev_where = max(prev_end, end), where
    out: list[int] = []
    for e in ends:
        if e >= 0 and (not out or e > out[-1]):
            out.append(e)
    return np.asarray(out, dtype=np.int64)


def _parse_time(value: str, where: str, what: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise OfactlError(f"{where}: {what} {value[:40]!r} is not a number") from None
    if not math.isfinite(t) or t < 0:
        raise OfactlError(f"{where}: {what} must be a non-negative number of seconds, found {value[:40]!r}")
    return t


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OfactlError(f"alignment file not found: {path}") from None
    except OSError as exc:
        raise OfactlError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # Praat writes UTF-16 when a label needs it
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OfactlError(f"{path}: not a text file (neither UTF-8 nor UTF-16)") from None


def _is_number(s: str) -> bool:
    return bool(_NUMBER.fullmatch(s.strip()))


def _detect_format(path: Path, text: str) -> str:
    if "ooTextFile" in text[:200] or re.search(r'Object class\s*=\s*"TextGrid', text[:400]):
        return "textgrid"
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";;")):
            continue
        if "\t" in line:
            fields = line.rstrip("\r").split("\t")
            if len(fields) in (3, 4) and _is_number(fields[1]) and _is_number(fields[2]):
                return "tsv"
        fields = stripped.split()
        if len(fields) in (5, 6) and _is_number(fields[2]) and _is_number(fields[3]):
            return "ctm"
        if len(fields) in (3, 4) and _is_number(fields[1]) and _is_number(fields[2]):
            return "tsv"
        if len(fields) >= 3 and not _is_number(fields[1]) and any(w in stripped.lower() for w in ("start", "begin")):
            continue  # a header line
        break
    raise OfactlError(f"{path}: cannot tell the alignment format from its content",
                      hint="pass fmt='tsv' (utt start end label), 'ctm' (utt channel start duration label) "
                           "or 'textgrid'")


def _read_tsv(path: Path, text: str) -> dict[str, list]:
    per_utt: dict[str, list] = {}
    first_data = True
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        fields = line.split("\t") if "\t" in line else line.split(None, 3)
        if first_data and len(fields) >= 3 and not _is_number(fields[1]) and not _is_number(fields[2]):
            first_data = False
            continue  # header (utt start end label)
        first_data = False
        if len(fields) not in (3, 4) or not fields[0].strip():
            raise OfactlError(f"{where}: expected 'utt<TAB>start<TAB>end<TAB>label' (seconds), found {line[:80]!r}")
        utt = fields[0].strip()
        start = _parse_time(fields[1], where, "start")
        end = _parse_time(fields[2], where, "end")
        if end < start:
            raise OfactlError(f"{where}: end {end:g} s is before start {start:g} s")
        label = fields[3].strip() if len(fields) == 4 else ""
        per_utt.setdefault(utt, []).append((start, end, label, where))
    return per_utt


def _read_ctm(path: Path, text: str) -> dict[str, list]:
    per_utt: dict[str, list] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith((";;", "#")):
            continue
        where = f"{path}:{lineno}"
        fields = stripped.split()
        if len(fields) not in (5, 6):
            raise OfactlError(f"{where}: expected 'utt channel start duration label [confidence]', "
                              f"found {stripped[:80]!r}")
        utt = fields[0]
        start = _parse_time(fields[2], where, "start")
        duration = _parse_time(fields[3], where, "duration")
        per_utt.setdefault(utt, []).append((start, start + duration, fields[4], where))
    return per_utt


_TG_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'          # a string ("" escapes a quote)
    r'|(?P<index>\[\s*\d*\s*\])'        # item [1]: / intervals [2]: (long format)
    r'|(?P<comment>![^\n]*)'            # ! comment
    r'|(?P<flag><[A-Za-z]+>)'           # <exists>
    r'|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])'
    r'|(?P<word>[A-Za-z_][\w?]*)'       # keys (xmin, intervals, size, ...)
    r'|(?P<nl>\n)'
    r'|(?P<other>[^\s])'
    r'|(?P<space>[ \t\r\f\v]+)'
)


def _textgrid_tokens(path: Path, text: str) -> list[tuple[str, Any, int]]:
    """Values of a TextGrid (long or short text format): ``(kind, value, line)`` with kind ``str``/``num``/``flag``."""
    tokens: list[tuple[str, Any, int]] = []
    line = 1
    pos = 0
    while pos < len(text):
        m = _TG_TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any character
            raise OfactlError(f"{path}:{line}: cannot parse the TextGrid")
        kind = m.lastgroup
        if kind == "str":
            tokens.append(("str", m.group("str").replace('""', '"'), line))
        elif kind == "num":
            tokens.append(("num", float(m.group("num")), line))
        elif kind == "flag":
            tokens.append(("flag", m.group("flag"), line))
        line += m.group(0).count("\n")
        pos = m.end()
    return tokens


def _read_textgrid(path: Path, text: str, tier: str | None) -> tuple[str, list]:
    """One TextGrid file -> ``(chosen tier name, intervals)``."""
    if "ooBinaryFile" in text[:100]:
        raise OfactlError(f"{path}: binary TextGrids are not supported", hint="save it as a text file in Praat")
    tokens = _textgrid_tokens(path, text)
    pos = 0

    def take(kind: str, what: str) -> Any:
        nonlocal pos
        if pos >= len(tokens):
            last_line = tokens[-1][2] if tokens else 1
            raise OfactlError(f"{path}:{last_line}: TextGrid ends early (expected {what})")
        k, value, line = tokens[pos]
        if k != kind:
            raise OfactlError(f"{path}:{line}: malformed TextGrid: expected {what}, found {value!r}")
        pos += 1
        return value

    if take("str", "'ooTextFile'") != "ooTextFile" or take("str", "'TextGrid'") != "TextGrid":
        raise OfactlError(f"{path}:1: not a Praat TextGrid (expected File type = \"ooTextFile\", "
                          f"Object class = \"TextGrid\")")
    take("num", "xmin")
    take("num", "xmax")
    if pos < len(tokens) and tokens[pos][0] == "flag":
        if tokens[pos][1] != "<exists>":
            raise OfactlError(f"{path}: the TextGrid has no tiers")
        pos += 1
    n_tiers = int(take("num", "the number of tiers"))
    tiers: list[tuple[str, str, list]] = []
    for _ in range(n_tiers):
        cls = take("str", "a tier class")
        name = take("str", "a tier name")
        take("num", "tier xmin")
        take("num", "tier xmax")
        size = int(take("num", "the number of intervals"))
        entries = []
        for _ in range(size):
            if cls == "IntervalTier":
                line = tokens[pos][2] if pos < len(tokens) else 0
                start = take("num", "interval xmin")
                end = take("num", "interval xmax")
                label = take("str", "interval text")
                if end < start or start < 0:
                    raise OfactlError(f"{path}:{line}: interval {start:g}-{end:g} s is not a valid interval")
                entries.append((start, end, label.strip(), f"{path}:{line}"))
            else:
                take("num", "point time")
                take("str", "point mark")
        tiers.append((cls, name, entries))
    interval_tiers = [t for t in tiers if t[0] == "IntervalTier"]
    if tier is not None:
        found = [t for t in interval_tiers if t[1] == tier]
    else:
        found = [t for t in interval_tiers if t[1].strip().lower() in ("phones", "phone")]
        if not found and len(interval_tiers) == 1:
            found = interval_tiers
    if not found:
        names = ", ".join(repr(t[1]) for t in interval_tiers) or "none"
        raise OfactlError(f"{path}: no {'tier ' + repr(tier) if tier else 'phones tier'} among the interval tiers "
                          f"({names})", hint="name the tier to use with tier=...")
    return found[0][1], found[0][2]


def import_alignments(path: str | os.PathLike, fmt: str | None = None, *, tier: str | None = None) -> SegmentTable:
    """Phone alignments -> a :class:`SegmentTable` of 20 ms end frames.

    Formats (``fmt``, detected from the content when None):

    * ``tsv``: ``utt<TAB>start<TAB>end<TAB>label`` in seconds (label optional;
      whitespace-separated works too when no field has a space); an optional
      header line; ``#`` comments.
    * ``ctm``: ``utt channel start duration label [confidence]``; ``;;`` comments.
    * ``textgrid``: a Praat TextGrid (long or short text format) or a folder of
      them (``<utt>.TextGrid``, searched recursively, the id is the file stem);
      the tier named ``phones`` (or ``phone``), else the only interval tier,
      or the one named by ``tier``.

    Rules (see :func:`time_to_end_frame`): frame ``t`` belongs to the interval
    containing its window centre; an interval's end frame is the last such
    frame; intervals holding no frame centre merge into the next segment.
    Silence labels (``sil``, ``sp``, ``spn``, empty, ``<eps>``) remain segments:
    they are real durations the CIF must integrate over; a gap between
    intervals is a segment too.  Frames after the last interval belong to no
    segment.

    Raises:
        OfactlError: a malformed line (naming file and line), overlapping
            intervals, an undetectable format, duplicate ids.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise OfactlError(f"unknown alignment format {fmt!r}", hint=f"one of: {', '.join(FORMATS)}")
    if not path.exists():
        raise OfactlError(f"alignment file not found: {path}")
    per_utt: dict[str, list] = {}
    tiers: set[str] = set()
    if path.is_dir():
        if fmt not in (None, "textgrid"):
            raise OfactlError(f"{path} is a folder; only TextGrids are read from folders",
                              hint=f"pass the {fmt} file itself")
        fmt = "textgrid"
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".textgrid")
        if not files:
            raise OfactlError(f"{path}: no .TextGrid files in this folder")
        origin: dict[str, Path] = {}
        for file in files:
            utt = file.stem
            if utt in origin:
                raise OfactlError(f"two TextGrids for utterance {utt!r}: {origin[utt]} and {file}",
                                  hint="utterance ids are file stems; they must be unique")
            origin[utt] = file
            name, intervals = _read_textgrid(file, _read_text(file), tier)
            tiers.add(name)
            per_utt[utt] = intervals
    else:
        text = _read_text(path)
        fmt = fmt or _detect_format(path, text)
        if fmt == "textgrid":
            name, intervals = _read_textgrid(path, text, tier)
            tiers.add(name)
            per_utt[path.stem] = intervals
        elif fmt == "tsv":
            per_utt = _read_tsv(path, text)
        else:
            per_utt = _read_ctm(path, text)
        if not per_utt:
            raise OfactlError(f"{path}: no alignments in this file")
    segments = {utt: _intervals_to_ends(intervals, utt) for utt, intervals in per_utt.items()}
    meta: dict[str, Any] = {"path": str(path)}
    if tiers:
        meta["tier"] = ",".join(sorted(tiers))
    table = SegmentTable(segments, source=f"alignments-{fmt}", meta=meta)
    table.meta["mean_duration_ms"] = f"{table.mean_duration_ms():.2f}"
    return table
