"""Continuous integrate-and-fire (CIF) and the once-for-all lambda modification.

* :func:`modify_alpha` is paper eq. 1 and 2 (Chen, Meng, Lee, ICASSP 2023):
  one scalar ``lam`` in ``[0, 2)`` turns the model's weights ``alpha`` into
  ``alpha_mod``; ``lam = 0`` keeps every 20 ms frame, ``lam -> 2`` keeps one
  frame per utterance.
* :func:`cif` pools ``x`` with those weights (Dong & Xu 2020, threshold 1):
  output ``n`` is the ``alpha``-weighted sum of the input frames whose running
  sum of ``alpha`` lies in ``[n, n + 1)``; a frame that crosses an integer
  splits its weight between the two outputs.  Vectorised: one float64 prefix
  sum and two ``index_add`` passes, no loop over time.
* :class:`AlphaModule` predicts ``alpha`` from CNN features.

Conventions: shapes are ``(batch, frame, feature)``; ``lengths`` are ``(batch,)``
valid frames; padded outputs are zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ofactl.layers import valid_mask

#: A running sum within this distance below an integer counts as reaching it.
#: It absorbs float error, so that ``alpha == 1`` everywhere (or a guard-scaled
#: ``alpha`` summing to 1 in float32) fires exactly as exact arithmetic would.
FIRE_EPS = 1e-4

LAMBDA_MAX = 2.0


class CIFOutput(NamedTuple):
    """Result of :func:`cif`.

    Attributes:
        out: ``(batch, N, feature)`` pooled frames, ``N = max(lengths)``; zero for
            ``n >= lengths[b]``.
        lengths: ``(batch,)`` int64, ``floor(sum_t alpha[b, t] + FIRE_EPS)``.
        centers: ``(batch, N)`` float64, each output's centre of mass in input
            frame indices (``sum_t w[t, n] * t``); zero on padding.  No gradient.
    """

    out: Tensor
    lengths: Tensor
    centers: Tensor


def _check_lengths(lengths: Tensor | None, batch: int, max_len: int, device: torch.device) -> Tensor:
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long, device=device)
    if lengths.ndim != 1 or lengths.shape[0] != batch:
        raise ValueError(f"expected lengths of shape ({batch},), found {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > max_len):
        raise ValueError(f"lengths must lie in [0, {max_len}], found [{int(lengths.min())}, {int(lengths.max())}]")
    return lengths.to(device=device, dtype=torch.long)


def modify_alpha(alpha: Tensor, lam: float | Tensor, lengths: Tensor | None = None) -> Tensor:
    """Paper eq. 1 and 2 with the min-one-frame guard.

    ``a = relu(1 - lam) + (relu(lam) - 2 relu(lam - 1)) * alpha``, that is
    ``lam * alpha + (1 - lam)`` for ``lam`` in ``[0, 1)`` and ``(2 - lam) * alpha``
    for ``lam`` in ``[1, 2)``, then ``alpha_mod = a / min(sum_t a, 1)`` per
    utterance, summing over its own frames only.  For ``lam >= 1`` this is eq. 2
    exactly; for ``lam < 1`` the guard is inactive whenever ``sum_t a >= 1``
    (always, unless an utterance has fewer than ``1 / (1 - lam)`` frames), so it
    is eq. 1 exactly; the guard then only keeps very short utterances from
    vanishing.  The result is piecewise linear in ``lam`` and differentiable
    with respect to a tensor ``lam`` (used by adaptive lambda).

    Args:
        alpha: ``(batch, frame)`` weights in ``[0, 1]``.
        lam: a float or a 0-d tensor in ``[0, 2)``, or a ``(batch,)`` tensor
            with one lambda per utterance.
        lengths: ``(batch,)`` valid frames, or None.

    Returns:
        ``alpha_mod``: ``(batch, frame)`` in ``[0, 1]``, zero on padding, in
        ``alpha``'s dtype promoted to at least float32 (so that the guard's
        sum is exact enough for half-precision models).
    """
    if alpha.ndim != 2:
        raise ValueError(f"expected alpha of shape (batch, frame), found {tuple(alpha.shape)}")
    dtype = torch.promote_types(alpha.dtype, torch.float32)
    alpha = alpha.to(dtype)
    if isinstance(lam, Tensor):
        if lam.ndim not in (0, 1) or (lam.ndim == 1 and lam.shape[0] != alpha.shape[0]):
            raise ValueError(f"lam must be a float, a 0-d tensor or a (batch,) tensor, found shape {tuple(lam.shape)}")
        lam_t = lam.to(dtype=dtype, device=alpha.device)
        if not lam_t.requires_grad and not bool(((lam_t >= 0) & (lam_t < LAMBDA_MAX)).all()):
            raise ValueError(f"lam must lie in [0, 2), found {lam_t.tolist()}")
        if lam_t.ndim == 1:
            lam_t = lam_t[:, None]  # one lambda per utterance (exact-rate extraction)
    else:
        if not 0.0 <= float(lam) < LAMBDA_MAX:
            raise ValueError(f"lam must lie in [0, 2), found {lam}")
        lam_t = torch.tensor(float(lam), dtype=dtype, device=alpha.device)
    relu = torch.relu
    a = relu(1 - lam_t) + (relu(lam_t) - 2 * relu(lam_t - 1)) * alpha
    lengths = _check_lengths(lengths, alpha.shape[0], alpha.shape[1], alpha.device)
    a = a * valid_mask(lengths, alpha.shape[1]).to(dtype)
    total = a.sum(dim=1, keepdim=True)
    denom = torch.where(total > 0, torch.clamp(total, max=1.0), torch.ones_like(total))
    return a / denom


def cif(x: Tensor, alpha: Tensor, lengths: Tensor | None = None) -> CIFOutput:
    """Continuous integrate-and-fire with threshold 1, tail dropped.

    Args:
        x: ``(batch, frame, feature)`` input frames.
        alpha: ``(batch, frame)`` weights in ``[0, 1]`` (at most one fire per
            frame); entries beyond ``lengths`` are ignored.
        lengths: ``(batch,)`` valid input frames, or None (all valid).

    Returns:
        :class:`CIFOutput` ``(out, lengths, centers)``.  Every output's weights sum
        to 1 (up to ``FIRE_EPS``); the partial output after the last fire is
        dropped, so ``lengths[b] = floor(sum_t alpha[b, t] + FIRE_EPS)``.
        Gradients reach ``x`` and ``alpha`` (through the prefix sum; the
        firing indices carry no gradient).  ``out`` has ``x``'s dtype; the
        weighted sum accumulates in at least float32.
    """
    if x.ndim != 3:
        raise ValueError(f"expected x of shape (batch, frame, feature), found {tuple(x.shape)}")
    if alpha.shape != x.shape[:2]:
        raise ValueError(f"expected alpha of shape {tuple(x.shape[:2])} (batch, frame), found {tuple(alpha.shape)}")
    batch, max_len, dim = x.shape
    device = x.device
    lengths = _check_lengths(lengths, batch, max_len, device)
    if max_len == 0:
        return CIFOutput(x.new_zeros(batch, 0, dim), torch.zeros(batch, dtype=torch.long, device=device),
                         torch.zeros(batch, 0, dtype=torch.float64, device=device))
    valid = valid_mask(lengths, max_len)
    acc_dtype = torch.promote_types(x.dtype, torch.float32)

    # Firing decisions from a float64 prefix sum.
    a64 = alpha.to(torch.float64).masked_fill(~valid, 0.0)
    csum = torch.cumsum(a64, dim=1)  # (B, T), carries gradient to alpha
    with torch.no_grad():
        if batch and float(a64.max()) > 1.0 + FIRE_EPS:
            raise ValueError(f"alpha must lie in [0, 1] (at most one fire per frame), found max {float(a64.max()):.6g}")
        if batch and float(a64.min()) < 0.0:
            raise ValueError(f"alpha must lie in [0, 1], found min {float(a64.min()):.6g}")
        fires_after = torch.floor(csum + FIRE_EPS).long()  # outputs completed after frame t
        fires_before = torch.nn.functional.pad(fires_after[:, :-1], (1, 0))  # output frame t starts in
        fired = (fires_after > fires_before) & valid
        out_lengths = fires_after[:, -1]
        n_max = int(out_lengths.max()) if batch else 0

    # Weight of frame t for output fires_after[t] (the remainder beyond the
    # integer) and for output fires_before[t] (the rest of alpha_t).
    remainder = torch.where(fired, (csum - fires_after.to(csum.dtype)).clamp(min=0.0), torch.zeros_like(csum))
    remainder = torch.minimum(remainder, a64)
    w_next = remainder
    w_prev = a64 - remainder

    # Scatter into n_max + 1 slots per utterance (the last collects the tail),
    # then drop every slot at or beyond the utterance's own output length.
    slots = n_max + 1
    base = (torch.arange(batch, device=device) * slots)[:, None]
    idx_prev = (base + fires_before.clamp(max=slots - 1)).reshape(-1)
    idx_next = (base + fires_after.clamp(max=slots - 1)).reshape(-1)
    xs = x.to(acc_dtype).masked_fill(~valid[..., None], 0.0).reshape(-1, dim)
    out = torch.zeros(batch * slots, dim, dtype=acc_dtype, device=device)
    out = out.index_add(0, idx_prev, xs * w_prev.to(acc_dtype).reshape(-1, 1))
    out = out.index_add(0, idx_next, xs * w_next.to(acc_dtype).reshape(-1, 1))
    out = out.view(batch, slots, dim)[:, :n_max]
    keep = valid_mask(out_lengths, n_max)
    out = out.masked_fill(~keep[..., None], 0.0).to(x.dtype)

    with torch.no_grad():
        t_index = torch.arange(max_len, device=device, dtype=torch.float64).expand(batch, max_len).reshape(-1)
        centers = torch.zeros(batch * slots, dtype=torch.float64, device=device)
        centers.index_add_(0, idx_prev, t_index * w_prev.detach().reshape(-1))
        centers.index_add_(0, idx_next, t_index * w_next.detach().reshape(-1))
        centers = centers.view(batch, slots)[:, :n_max].masked_fill(~keep, 0.0)
    return CIFOutput(out, out_lengths, centers)


class AlphaModule(nn.Module):
    """Predicts CIF weights: Conv1d(k=5) -> LayerNorm -> ReLU -> Linear(., 1) -> sigmoid.

    Padded frames are zeroed before the convolution (so a batch equals one
    utterance at a time) and ``alpha`` is zero on padding.
    """

    def __init__(self, dim: int, kernel_size: int = 5):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"alpha kernel_size must be odd, found {kernel_size}")
        self.conv = nn.Conv1d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``x``: ``(batch, frame, feature)``, ``lengths``: ``(batch,)`` -> ``alpha (batch, frame)``."""
        valid = valid_mask(lengths, x.shape[1])
        h = x.masked_fill(~valid[..., None], 0.0)
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        h = torch.relu(self.norm(h))
        alpha = torch.sigmoid(self.proj(h).squeeze(-1))
        return alpha.masked_fill(~valid, 0.0)
