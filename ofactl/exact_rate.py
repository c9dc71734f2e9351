"""Exact-rate extraction: the lambda that gives one utterance exactly a target number of output frames.

The target of an utterance at a frame period is :func:`ofactl.period.exact_target_frames`
(its duration over the period, rounded, at least one frame); the lambda is
:func:`solve_exact_lambda`'s closed form (checked against the CIF's own
count).  See :mod:`ofactl.calibrate` for the two sums the count depends on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ofactl.cif import FIRE_EPS, LAMBDA_MAX, modify_alpha
from ofactl.errors import OfactlError

__all__ = ["solve_exact_lambda", "solve_exact_lambdas"]

def _lam_for_sum(total: float, sums: float, n_frames: int) -> float:
    """The lambda with ``sum_t a_t = total`` (closed form, ``0 < total <= T``)."""
    if total >= sums:  # lam in [0, 1]: (1 - lam) T + lam S = total
        return 0.0 if n_frames <= sums else (n_frames - total) / (n_frames - sums)
    return LAMBDA_MAX - total / sums  # lam in (1, 2): (2 - lam) S = total


def _fired(alpha: Tensor, lam: float) -> tuple[int, float]:
    """Frames CIF fires for ``alpha`` at ``lam``, computed as :func:`ofactl.cif.cif` does, and the sum."""
    mod = modify_alpha(alpha[None], lam)
    total = float(torch.cumsum(mod.to(torch.float64), dim=1)[0, -1])
    return math.floor(total + FIRE_EPS), total


def solve_exact_lambda(alpha: Tensor, target_frames: int) -> float:
    """The lambda that gives one utterance exactly ``target_frames`` output frames.

    Closed form (REFERENCE.md): with ``S = sum_t alpha_t`` and ``T`` frames,
    ``sum_t alpha_mod_t = y`` at ``lam = (T - y) / (T - S)`` when ``y >= S``
    and ``lam = 2 - y / S`` when ``y < S``.  It aims at ``y = K + 1/2 - FIRE_EPS``,
    the middle of the interval that CIF floors to ``K``, so float differences
    between this solve and the forward pass (batching, device, dtype) cannot
    change the count; ``K = T`` gives ``lam = 0`` (every frame kept).  The
    result is checked by evaluating ``modify_alpha`` as CIF does, and found by
    bisection in the (never observed) case that rounding disagrees.

    Args:
        alpha: ``(frame,)`` the utterance's 20 ms weights, valid frames only.
        target_frames: the wanted output frames; clipped to ``[1, T]``.

    Returns:
        ``lam`` in ``[0, 2)``.

    Raises:
        OfactlError: the utterance has no 20 ms frame (no lambda gives a frame).
    """
    if alpha.ndim != 1:
        raise ValueError(f"expected alpha of shape (frame,), found {tuple(alpha.shape)}")
    n_frames = int(alpha.shape[0])
    if n_frames == 0:
        raise OfactlError("an utterance shorter than one 20 ms frame has no output frame at any lambda")
    target = min(max(int(target_frames), 1), n_frames)
    if target == n_frames:
        return 0.0
    alpha = alpha.detach().cpu()
    sums = float(alpha.to(torch.float64).sum())
    lam = min(max(_lam_for_sum(target + 0.5 - FIRE_EPS, sums, n_frames), 0.0), math.nextafter(LAMBDA_MAX, 0.0))
    if _fired(alpha, lam)[0] == target:
        return float(lam)
    lo, hi = 0.0, LAMBDA_MAX - 1e-12  # count(lo) = T > target >= count(hi) (1, or 0 if alpha == 0)
    for _ in range(200):
        mid = (lo + hi) / 2
        fired = _fired(alpha, mid)[0]
        if fired == target:
            return mid
        if fired > target:
            lo = mid
        else:
            hi = mid
    raise OfactlError(f"no lambda gives exactly {target} frames for this utterance (T={n_frames}, sum alpha={sums:.6g})")


def solve_exact_lambdas(alpha: Tensor, lengths: Tensor, target_frames: Tensor | Sequence[int]) -> Tensor:
    """:func:`solve_exact_lambda` for a padded batch: ``alpha (batch, frame)``,
    ``lengths (batch,)``, ``target_frames (batch,)`` -> ``lam (batch,)`` float64,
    ready for ``modify_alpha(alpha, lam, lengths)``."""
    targets = [int(v) for v in torch.as_tensor(target_frames).reshape(-1).tolist()]
    lens = [int(v) for v in lengths.reshape(-1).tolist()]
    if alpha.ndim != 2 or len(lens) != alpha.shape[0] or len(targets) != alpha.shape[0]:
        raise ValueError(f"expected alpha (batch, frame) with (batch,) lengths and targets, found "
                         f"{tuple(alpha.shape)}, {len(lens)}, {len(targets)}")
    alpha = alpha.detach().cpu()
    return torch.tensor([solve_exact_lambda(alpha[b, :n], k) for b, (n, k) in enumerate(zip(lens, targets))],
                        dtype=torch.float64)
