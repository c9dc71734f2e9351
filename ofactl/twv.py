"""Term-weighted value (TWV) of a query-by-example detector, as scored for QUESST 2014.

A trial is a (query, document) pair; the detector says YES when its score
is at least the threshold ``theta`` (one threshold for all queries).  For a
query ``q`` with ``T_q`` target documents (those the ground truth says
contain it) and ``N_q`` non-target documents::

    P_miss(q, theta) = 1 - hits(q, theta) / T_q
    P_fa(q, theta)   = false_alarms(q, theta) / N_q
    TWV(theta)       = 1 - mean over queries with T_q > 0 of [P_miss(q, theta) + beta * P_fa(q, theta)]
    beta             = (C_fa / C_miss) * (1 / P_target - 1)
    MTWV             = max over theta of TWV(theta)

(NIST 2006 STD evaluation plan, section 4; per document instead of per
second, as the MediaEval QUESST scoring tool counts trials: "495 model x
10762 test" in its README.)  Queries with no occurrence in the documents
are left out (the tool's "Removing unseen models").  No detections at all
(``theta`` above every score) gives TWV 0, so MTWV >= 0; a perfect detector
gives 1.

Constants: ``P_target = 0.0008``, ``C_miss = 100``, ``C_fa = 1``, hence
``beta = 12.49`` — the values of the QUESST scoring script
``scoring/score-TWV-Cnxe.sh`` (``P_target=0.0008 C_fa=1 C_miss=100``, passed
to the jar as the effective prior ``C_miss P_target / (C_miss P_target +
C_fa (1 - P_target)) = 0.0741289``) and of the QUESST 2014 task overview
(Anguera, Rodriguez-Fuentes, Szöke, Buzo, Metze: "Query by Example Search
on Speech at MediaEval 2014", MediaEval 2014 workshop).  NIST STD 2006
itself used ``C/V = 0.1`` and ``P_target = 1e-4`` (``beta = 999.9``); pass
``beta`` for that.
"""

from __future__ import annotations

import math

import numpy as np

#: QUESST 2014 cost model (score-TWV-Cnxe.sh)
P_TARGET = 0.0008
C_MISS = 100.0
C_FA = 1.0
BETA = (C_FA / C_MISS) * (1.0 / P_TARGET - 1.0)


def _check(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores {s.shape} and truth {t.shape} must be (queries, documents) of one shape")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s, t


def _gains(s: np.ndarray, t: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Scores and TWV increments of the scored queries' trials (None when no query has a target)."""
    keep = t.any(axis=1)
    if not keep.any():
        return None
    s, t = s[keep], t[keep]
    n_queries = s.shape[0]
    n_target = t.sum(axis=1, keepdims=True)
    n_nontarget = np.maximum((~t).sum(axis=1, keepdims=True), 1)  # no non-target trial: no false alarm either
    gain = np.where(t, 1.0 / (n_target * n_queries), -beta / (n_nontarget * n_queries))
    return s.ravel(), gain.ravel()


def twv(scores, truth, threshold: float, beta: float = BETA) -> float:
    """TWV at ``threshold`` (YES when score >= threshold); NaN when no query occurs in any document."""
    s, t = _check(scores, truth)
    g = _gains(s, t, beta)
    if g is None:
        return math.nan
    flat, gain = g
    return float(gain[flat >= threshold].sum())


def mtwv(scores, truth, beta: float = BETA) -> tuple[float, float]:
    """``(MTWV, threshold)``: the best TWV over all thresholds and the threshold giving it.

    The threshold is a score value (YES for scores at or above it), or ``inf``
    when detecting nothing (TWV 0) is best.  ``(nan, nan)`` when no query
    occurs in any document.
    """
    s, t = _check(scores, truth)
    g = _gains(s, t, beta)
    if g is None:
        return math.nan, math.nan
    flat, gain = g
    order = np.argsort(-flat, kind="stable")
    sorted_scores = flat[order]
    value = np.cumsum(gain[order])
    last = np.append(sorted_scores[1:] != sorted_scores[:-1], True)  # TWV only between distinct scores
    values, thresholds = value[last], sorted_scores[last]
    best = int(np.argmax(values))
    if values[best] <= 0.0:
        return 0.0, math.inf
    return float(values[best]), float(thresholds[best])


def query_terms(scores, truth, thresholds, beta: float = BETA) -> tuple[np.ndarray, np.ndarray]:
    """Each scored query's TWV term at each threshold, and which queries are scored.

    Returns ``(terms, scored)``: ``terms[q, k] = hits_q / T_q - beta * false_alarms_q / N_q`` at
    ``thresholds[k]`` for the queries with a target (``scored``, a boolean mask over all queries).  The
    TWV at a threshold is the mean of its column, so resampling queries resamples rows.
    """
    s, t = _check(scores, truth)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    scored = t.any(axis=1)
    terms = np.empty((int(scored.sum()), thresholds.size), dtype=np.float64)
    for row, q in enumerate(np.flatnonzero(scored)):
        target = np.sort(s[q, t[q]])
        other = np.sort(s[q, ~t[q]])
        hits = target.size - np.searchsorted(target, thresholds, side="left")
        false_alarms = other.size - np.searchsorted(other, thresholds, side="left")
        terms[row] = hits / target.size - beta * false_alarms / max(other.size, 1)
    return terms, scored


def candidate_thresholds(scores, truth) -> np.ndarray:
    """The thresholds among which the MTWV is found: the distinct scores of target trials.

    Lowering the threshold past a score with no target trial only adds false
    alarms, so the best TWV is at a target trial's score (or at detecting
    nothing, TWV 0).
    """
    s, t = _check(scores, truth)
    return np.unique(s[t])


def mtwv_from_terms(curve_sums, n) -> np.ndarray | float:
    """MTWV from summed :func:`query_terms` rows (``(..., K)``) over ``n`` queries (vectorised; 0 at worst)."""
    curve_sums = np.asarray(curve_sums, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = curve_sums / n[..., None]
    best = mean.max(axis=-1, initial=0.0)  # detecting nothing gives 0
    best = np.where(n > 0, best, np.nan)
    return float(best) if best.ndim == 0 else best


__all__ = ["BETA", "C_FA", "C_MISS", "P_TARGET", "candidate_thresholds", "mtwv", "mtwv_from_terms", "query_terms",
           "twv"]
