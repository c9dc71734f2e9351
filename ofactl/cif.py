"""Continuous integrate-and-fire (CIF) and the once-for-all lambda modification.

* :func:`modify_alpha` is paper eq. 1 and 2 (Chen, Meng, Lee, ICASSP 2023):
  one scalar ``lam`` in ``[0, 2)`` turns the model's weights ``alpha`` into
  ``alpha_mod``; ``lam = 0`` keeps every 20 ms frame, ``lam -> 2`` keeps one
  frame per utterance.
* :func:`cif` pools ``x`` with those weights (Dong & Xu 2020, threshold 1):
  output ``n`` is the ``alpha``-weighted sum of the input frames whose running
  sum of ``alpha`` lies in ``[n, n + 1)``; a frame that crosses an integer
  splits its weight between the two outputs.  Vectorised: one float64 prefix
  sum and one weighted bag sum that reads each input row once, no loop over
  time.
* :class:`AlphaModule` predicts ``alpha`` from CNN features.

Conventions: shapes are ``(batch, frame, feature)``; ``lengths`` are ``(batch,)``
valid frames; padded outputs are zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ofactl.channels_last import conv1d_module
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


def _check_lengths(lengths: Tensor | None, batch: int, max_len: int, device: torch.device,
                   check_range: bool = True) -> Tensor:
    """``lengths`` as int64 on ``device`` (``max_len`` each if None); its range is
    checked here unless the caller does it (:func:`cif`, in its one host sync)."""
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long, device=device)
    if lengths.ndim != 1 or lengths.shape[0] != batch:
        raise ValueError(f"expected lengths of shape ({batch},), found {tuple(lengths.shape)}")
    if check_range and batch:
        _check_length_range(int(lengths.min()), int(lengths.max()), max_len)
    return lengths.to(device=device, dtype=torch.long)


def _check_length_range(low: int, high: int, max_len: int) -> None:
    if low < 0 or high > max_len:
        raise ValueError(f"lengths must lie in [0, {max_len}], found [{low}, {high}]")


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

    Algorithm.  A float64 prefix sum ``csum`` of ``alpha`` decides the firings:
    frame ``t`` lies in output ``prev[t] = floor(csum[t - 1] + FIRE_EPS)`` with
    weight ``w_prev[t]``, and a frame that fires also starts output
    ``next[t] = floor(csum[t] + FIRE_EPS)`` with the remainder ``w_next[t]``.
    These (frame, output, weight) *entries*, one per frame plus one per fired
    frame, are ordered by frame and by output at once, so that one weighted
    bag sum (``embedding_bag``, bags = outputs) reads each row of ``x`` once
    and writes each output once (:class:`_PoolFrames`).  Entries of padded
    frames and of the dropped tail are left out altogether, so nothing from
    them (NaN included) reaches an output or a gradient; without a gradient to
    carry, so are entries of weight 0 (at lambda 0 half of them: every frame
    fires exactly on an integer).  Bag and frame offsets are counts and prefix
    sums (``bincount``), not searches.  The backward is the
    same bag sum the other way round (bags = frames) for ``x`` and one dot
    product per entry for the weights, from where autograd carries the
    gradient through the float64 prefix sum to ``alpha``.  One host sync
    reads the output size together with the range checks of ``lengths`` and
    ``alpha`` (NaN included).
    """
    if x.ndim != 3:
        raise ValueError(f"expected x of shape (batch, frame, feature), found {tuple(x.shape)}")
    if alpha.shape != x.shape[:2]:
        raise ValueError(f"expected alpha of shape {tuple(x.shape[:2])} (batch, frame), found {tuple(alpha.shape)}")
    batch, max_len, dim = x.shape
    device = x.device
    # (without frames there is no host sync below to check the range in)
    lengths = _check_lengths(lengths, batch, max_len, device, check_range=max_len == 0)
    if max_len == 0:
        return CIFOutput(x.new_zeros(batch, 0, dim), torch.zeros(batch, dtype=torch.long, device=device),
                         torch.zeros(batch, 0, dtype=torch.float64, device=device))
    valid = valid_mask(lengths, max_len)

    # Firing decisions from a float64 prefix sum (padded frames weigh 0, so never fire).
    a64 = torch.where(valid, alpha.to(torch.float64), 0.0)
    csum = torch.cumsum(a64, dim=1)  # (B, T), carries gradient to alpha
    with torch.no_grad():
        fires_after = torch.floor(csum + FIRE_EPS).long()  # outputs completed after frame t
        out_lengths = fires_after[:, -1]
        # Pairs (t, fires_before[t]) and (t, fires_after[t]) in frame order: the
        # output frame t starts in (fires_after[t - 1]) and the one it may start.
        pair_out = torch.empty(batch, max_len, 2, dtype=torch.long, device=device)
        pair_out[:, 0, 0] = 0
        pair_out[:, 1:, 0] = fires_after[:, :-1]
        pair_out[..., 1] = fires_after
        fired = fires_after > pair_out[..., 0]
        n_max = 0
        if batch:  # the one host sync: the range checks and the output size
            len_min, len_max, a_min, a_max, n_max = torch.stack(
                [*lengths.aminmax(), *a64.aminmax(), out_lengths.max()]).tolist()
            _check_length_range(int(len_min), int(len_max), max_len)
            if not a_min >= 0.0 or not a_max <= 1.0 + FIRE_EPS:  # (NaN fails both)
                raise ValueError(f"alpha must lie in [0, 1] (at most one fire per frame), found values in "
                                 f"[{a_min:.6g}, {a_max:.6g}]")
            n_max = int(n_max)
    if n_max == 0:  # nothing fires: empty, but still attached to the graph
        return CIFOutput((x[:, :0] * alpha[:, :0, None]).to(x.dtype), out_lengths,
                         torch.zeros(batch, 0, dtype=torch.float64, device=device))

    # Weight of frame t for output fires_after[t] (the remainder beyond the
    # integer) and for output fires_before[t] (the rest of alpha_t).  The
    # remainder stays below alpha_t: a fire means csum[t - 1] + FIRE_EPS < fires_after[t].
    remainder = torch.where(fired, (csum - fires_after.to(csum.dtype)).clamp(min=0.0), 0.0)
    w_pair = torch.stack([a64 - remainder, remainder], dim=-1).view(-1)

    # The entries: the pairs of valid outputs (padded frames have fires_before ==
    # out_lengths, so none of theirs), the second only where t fires; without a
    # gradient to carry, entries of weight 0 (a fire exactly on an integer, alpha
    # 0) add nothing and are left out too.  Sorted by frame and by output at once.
    n_bags = batch * n_max
    with torch.no_grad():
        kept = pair_out < out_lengths[:, None, None]
        kept[..., 1] &= fired
        kept = kept.view(-1)
        if not (torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad)):
            kept &= w_pair != 0
        entry_pair = kept.nonzero().squeeze(1)
        frame_of = entry_pair >> 1
        utt_of = frame_of // max_len
        bag_of = pair_out.view(-1).index_select(0, entry_pair) + utt_of * n_max
        bag_offsets = _first_entries(bag_of, n_bags)
    weights = w_pair.index_select(0, entry_pair)

    with torch.no_grad():
        centers = torch.zeros(n_bags, dtype=torch.float64, device=device)
        centers.index_add_(0, bag_of, weights.detach() * (frame_of - utt_of * max_len))
        centers = centers.view(batch, n_max)

    acc_dtype = torch.promote_types(x.dtype, torch.float32)
    frames = x.reshape(batch * max_len, dim).to(acc_dtype)
    out = _PoolFrames.apply(frames, weights.to(acc_dtype), frame_of, bag_of, bag_offsets)
    return CIFOutput(out.view(batch, n_max, dim).to(x.dtype), out_lengths, centers)


def _first_entries(groups: Tensor, n_groups: int) -> Tensor:
    """For entries sorted by group (``groups``, values in ``[0, n_groups)``), the index of each group's first
    entry (of the next group's, for a group without entries): a count and a prefix sum, no search."""
    counts = torch.bincount(groups, minlength=n_groups)
    return torch.cumsum(counts, 0) - counts


#: The fused kernel behind ``embedding_bag``'s per-sample-weight gradient (an internal ATen op, stable for years;
#: where a torch build lacks it, the plain gather below gives the same numbers with one more temporary).
_PER_SAMPLE_WEIGHTS_BACKWARD = getattr(torch.ops.aten, "_embedding_bag_per_sample_weights_backward", None)


class _PoolFrames(torch.autograd.Function):
    """``out[n] = sum_e weights[e] * frames[frame_of[e]]`` over the entries ``e`` with ``bag_of[e] == n``.

    The entries are sorted by output (``bag_offsets[n]``: the first entry of
    output ``n``) and by frame (so that each frame's entries are one bag for the
    backward; a frame without entries gets a zero gradient).  Forward and the
    ``frames`` gradient are one ``embedding_bag`` each (bags = outputs, then
    bags = frames); the ``weights`` gradient ``<frames[frame_of[e]],
    grad[bag_of[e]]>`` is the fused kernel that autograd itself uses for
    ``embedding_bag``'s per-sample weights.
    """

    @staticmethod
    def forward(ctx, frames: Tensor, weights: Tensor, frame_of: Tensor, bag_of: Tensor, bag_offsets: Tensor) -> Tensor:
        ctx.save_for_backward(frames, weights, frame_of, bag_of, bag_offsets)
        # detached (here and in backward): embedding_bag then skips the bookkeeping for its own backward
        return nn.functional.embedding_bag(frame_of, frames.detach(), bag_offsets, mode="sum",
                                           per_sample_weights=weights.detach())

    @staticmethod
    def backward(ctx, grad: Tensor):
        frames, weights, frame_of, bag_of, bag_offsets = ctx.saved_tensors
        grad = grad.contiguous()
        grad_frames = grad_weights = None
        if ctx.needs_input_grad[0]:
            frame_offsets = _first_entries(frame_of, frames.shape[0])
            grad_frames = nn.functional.embedding_bag(bag_of, grad, frame_offsets, mode="sum",
                                                      per_sample_weights=weights.detach())
        if ctx.needs_input_grad[1] and _PER_SAMPLE_WEIGHTS_BACKWARD is not None:
            grad_weights = _PER_SAMPLE_WEIGHTS_BACKWARD(grad, frames, frame_of, bag_offsets, bag_of, 0, -1)  # sum mode
        elif ctx.needs_input_grad[1]:
            grad_weights = (frames.index_select(0, frame_of) * grad.index_select(0, bag_of)).sum(-1)
        return grad_frames, grad_weights, None, None, None


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
        h = conv1d_module(self.conv, h.transpose(1, 2)).transpose(1, 2)  # channels-last on the CPU: no copies
        h = torch.relu(self.norm(h))
        alpha = torch.sigmoid(self.proj(h).squeeze(-1))
        return alpha.masked_fill(~valid, 0.0)
