"""HuBERT-code segments: k-means on a teacher layer, then a duration-penalised DP (Kamper & van Niekerk)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ofactl.errors import OfactlError
from ofactl.progress import Progress
from ofactl.period import HOP_SAMPLES, SAMPLE_RATE
from ofactl.segments.table import DEFAULT_SMOOTHING, MAX_SEGMENT_FRAMES, SegmentTable, _check_id


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
    progress: Progress | None = None,
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
        max_batch_s, num_workers: the audio pipeline (:func:`ofactl.data.pipeline.iter_batches`).
        device: where the teacher runs (default: where its weights are).
        progress: called as ``progress(utterances_done, total, "")``; ``total``
            counts the k-means pass and the segmentation pass.

    Returns:
        A :class:`SegmentTable` (``source=hubert-codes``; metadata: layer,
        n_clusters, smoothing, max_segment_frames, kmeans_frames, seed, teacher,
        mean_duration_ms, skipped).  Unreadable files are left out and counted
        in ``meta["skipped"]``; their :class:`~ofactl.data.problems.Problem` s are ``table.problems``.
    """
    import torch

    from ofactl.data.audio import AudioError, audio_info
    from ofactl.data.pipeline import AudioItem, Batch, iter_batches
    from ofactl.data.problems import Problem
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
    problems: list[Problem] = []
    for u in utterances:
        if u.id in seen:
            raise OfactlError(f"utterance id {u.id!r} appears twice", hint="segments are keyed by id; ids must be unique")
        seen.add(u.id)
        _check_id(u.id)
        duration = u.duration_s
        if duration is None:
            try:
                duration = audio_info(u.path).duration_s - float(getattr(u, "offset_s", 0.0) or 0.0)
            except AudioError as err:
                problems.append(err.problem(u.id))
                continue
        duration = max(float(duration), 0.0)
        items.append(AudioItem(u.id, str(u.path), float(getattr(u, "offset_s", 0.0) or 0.0), duration))
        durations.append(duration)
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
        progress(0, total, "")

    def features_of(indices: Sequence[int]) -> Iterator[tuple[str, np.ndarray]]:
        nonlocal done
        sub = [items[i] for i in indices]
        for batch in iter_batches(sub, max_batch_s=max_batch_s, num_workers=num_workers):
            if isinstance(batch, Problem):
                problems.append(batch)
            else:
                with autocast(run_device, precision):
                    out = teacher(batch.audio.to(run_device), batch.lengths.to(run_device), layers=[layer])
                h = out.hidden_states[layer].float().cpu().numpy()
                for b, utt in enumerate(batch.ids):
                    yield utt, h[b, : int(out.lengths[b])]
            done += len(batch.ids) if isinstance(batch, Batch) else 1
            if progress:
                progress(done, total, "")

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
    table = SegmentTable(ordered, source="hubert-codes", problems=problems, meta={
        "layer": layer, "n_clusters": n_clusters, "smoothing": float(smoothing),
        "max_segment_frames": max_segment_frames, "kmeans_frames": int(pool.shape[0]), "seed": seed,
        "teacher": str(teacher_name), "skipped": len(problems),
    })
    table.meta["mean_duration_ms"] = f"{table.mean_duration_ms():.2f}"
    if progress and done < total:
        progress(total, total, "")
    return table
