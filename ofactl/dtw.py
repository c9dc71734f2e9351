"""Subsequence DTW of spoken queries against spoken documents (the SUPERB QbE matcher).

    >>> costs = search(queries, documents)      # lists of (frames, dim) tensors -> (Q, D) array

A query may match anywhere inside a document: the alignment starts at any
document frame (open begin) and ends at any later one (open end).  The
steps are dtw-python's ``asymmetric`` pattern, which s3prl's
``quesst14_dtw`` uses for its subsequence search: every query frame is
aligned to exactly one document frame, and from query frame ``i - 1`` to
``i`` the document advances by 0, 1 or 2 frames::

    g[0, j] = d[0, j]
    g[i, j] = d[i, j] + min(g[i-1, j], g[i-1, j-1], g[i-1, j-2])
    cost    = min_j g[N-1, j] / N

``d`` is the cosine distance ``1 - cos`` between query frame ``i`` and
document frame ``j`` (in [0, 2]).  The path has exactly ``N`` (query
frames) cells of weight 1, so dividing by ``N`` (dtw-python's ``"N"``
normalisation of this pattern, s3prl's ``normalizedDistance``) makes the
cost the mean frame distance along the best path, comparable across
queries of different lengths.  A query may cover at most ``2N - 1``
document frames.

:func:`search` runs the recurrence for one query against all documents at
once: the documents' frames are concatenated with two columns of infinite
distance between neighbours (a step skips at most one column, so no path
crosses from one document into the next), and each step of the recurrence
is one vectorised minimum over all of them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

#: separator columns between concatenated documents (one more than the longest step skips)
_GAP = 2


def subsequence_dtw(dist: Tensor) -> Tensor:
    """Open-begin, open-end asymmetric DTW over a ``(..., N, M)`` distance matrix: ``(...)`` costs / N.

    ``inf`` entries are cells no path may use (a path that cannot avoid them costs ``inf``).
    """
    if dist.shape[-2] == 0 or dist.shape[-1] == 0:
        raise ValueError(f"subsequence DTW needs at least one query and one document frame, got {tuple(dist.shape[-2:])}")
    g = dist[..., 0, :]
    inf = torch.full_like(g[..., :1], float("inf"))
    for i in range(1, dist.shape[-2]):
        prev1 = torch.cat([inf, g[..., :-1]], dim=-1)
        prev2 = torch.cat([inf, inf, g[..., :-2]], dim=-1)[..., : g.shape[-1]]
        g = dist[..., i, :] + torch.minimum(g, torch.minimum(prev1, prev2))
    return g.min(dim=-1).values / dist.shape[-2]


def _unit_rows(x: Tensor) -> Tensor:
    x = x.to(torch.float32)
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def search(queries: Sequence[Tensor], documents: Sequence[Tensor], *, rows_per_chunk: int = 64) -> np.ndarray:
    """Length-normalised subsequence-DTW cost of every query in every document: a ``(Q, D)`` float64 array.

    Frame distance: cosine distance (``1 - cos``; a zero vector is at distance 1 from everything),
    computed in float32 (the costs agree with a float64 computation to about 1e-7).
    Raises ValueError for a query or document without frames (callers name it).
    """
    for kind, items in (("query", queries), ("document", documents)):
        for k, x in enumerate(items):
            if x.ndim != 2 or x.shape[0] == 0:
                raise ValueError(f"{kind} {k} has no frames (shape {tuple(x.shape)})")
    if not documents:
        return np.zeros((len(queries), 0))
    dim = documents[0].shape[1]
    lengths = [int(x.shape[0]) for x in documents]
    starts = np.cumsum([0] + [n + _GAP for n in lengths[:-1]])
    total = int(starts[-1] + lengths[-1])
    flat = torch.zeros(total, dim, dtype=torch.float32)
    for s, x in zip(starts, documents):
        flat[s : s + x.shape[0]] = _unit_rows(x)
    flat_t = flat.T.contiguous()
    gaps = torch.from_numpy(np.concatenate([np.arange(s + n, s + n + _GAP) for s, n in zip(starts[:-1], lengths)]
                                           + [np.zeros(0, dtype=np.int64)]).astype(np.int64))
    frames = torch.from_numpy(np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)]).astype(np.int64))
    seg_starts = np.cumsum([0] + lengths[:-1])
    one = torch.ones(1, dtype=torch.float32)
    out = np.empty((len(queries), len(documents)))
    for qi, q in enumerate(queries):
        qn = _unit_rows(q)
        g = None
        for r0 in range(0, qn.shape[0], rows_per_chunk):
            dist = torch.addmm(one, qn[r0 : r0 + rows_per_chunk], flat_t, alpha=-1.0)   # 1 - cos, (rows, total)
            dist.index_fill_(1, gaps, float("inf"))
            for row in dist:
                if g is None:
                    g = row
                    continue
                best = torch.cat([g[:1], torch.minimum(g[1:], g[:-1])])     # min(g[j], g[j-1])
                best[2:] = torch.minimum(best[2:], g[:-2])                   # ... and g[j-2]
                g = row + best
        last = g[frames].double().numpy()
        out[qi] = np.minimum.reduceat(last, seg_starts) / qn.shape[0]
    return out


__all__ = ["search", "subsequence_dtw"]
