"""Corpus BLEU from per-sentence sufficient statistics, computed by sacreBLEU.

sacreBLEU's corpus score is a function of ten sums over the sentences: the
matching and total n-gram counts for n = 1..4, the hypothesis length and the
reference length.  :func:`sentence_stats` asks sacreBLEU for those ten numbers
of each (hypothesis, reference) pair; :func:`bleu` turns sums of them (or
arrays of bootstrap-resampled sums) back into BLEU with sacreBLEU's own
``compute_bleu``.  The result equals ``sacrebleu.corpus_bleu(hyps, [refs])``
exactly: detokenised input, the ``13a`` tokeniser, case-sensitive,
exponential smoothing (sacreBLEU's defaults, what s3prl reports for ST).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ofactl.errors import OfactlError

ORDER = 4
#: Names of the per-sentence statistics, in the order :func:`sentence_stats` returns them.
STATS = tuple(f"correct{n}" for n in range(1, ORDER + 1)) + tuple(f"total{n}" for n in range(1, ORDER + 1)) + (
    "sys_len", "ref_len")
TOKENIZE = "13a"
SMOOTH = "exp"


def require(module: str, task: str = "st"):
    """Import ``module`` (an optional dependency of a task); one line naming the extra when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise OfactlError(f"task {task} needs the Python package {module}, which is not installed",
                          hint=f"pip install 'ofactl[{task}]'") from err


def _metric():
    require("sacrebleu")
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=TOKENIZE, smooth_method=SMOOTH)


def sentence_stats(hyps: list[str], refs: list[str]) -> dict[str, np.ndarray]:
    """``{name: (n,) array}`` of the statistics in :data:`STATS`, one entry per (hypothesis, reference) pair."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    metric = _metric()
    rows = np.zeros((len(hyps), len(STATS)), dtype=np.float64)
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = metric.corpus_score([h], [[r]])
        rows[i] = [*s.counts, *s.totals, s.sys_len, s.ref_len]
    return {name: rows[:, j] for j, name in enumerate(STATS)}


def _one(values: list[float]) -> float:
    from sacrebleu.metrics import BLEU

    correct = [int(round(v)) for v in values[:ORDER]]
    total = [int(round(v)) for v in values[ORDER: 2 * ORDER]]
    sys_len, ref_len = int(round(values[-2])), int(round(values[-1]))
    if ref_len == 0 and sys_len == 0:
        return float("nan")
    return float(BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method=SMOOTH).score)


def bleu(totals: dict[str, Any]) -> Any:
    """Corpus BLEU (0-100) from summed statistics: floats give a float, arrays (bootstrap replicates) an array.

    NaN when there is nothing to score (no sentence)."""
    require("sacrebleu")
    arrays = [np.asarray(totals[name], dtype=np.float64) for name in STATS]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    if not shape:
        return _one([float(a) for a in arrays])
    flat = [np.broadcast_to(a, shape).ravel() for a in arrays]
    out = np.array([_one([f[i] for f in flat]) for i in range(flat[0].size)], dtype=np.float64)
    return out.reshape(shape)


def corpus_bleu(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU of hypotheses against one reference each (the sum of :func:`sentence_stats`)."""
    stats = sentence_stats(hyps, refs)
    return bleu({k: float(v.sum()) for k, v in stats.items()})
