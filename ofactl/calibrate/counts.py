"""How many frames CIF fires at any lambda, from two sums of the 20 ms weights per utterance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ofactl.cif import FIRE_EPS, LAMBDA_MAX

_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- frame counts


class AlphaStats(NamedTuple):
    """What frame counts depend on: per utterance ``sums`` (float64, ``sum_t alpha_t``)
    and ``n_frames`` (int64, ``T``), both ``(utterance,)``.

    Accumulate these (not the alphas) over a large dataset: 16 bytes per utterance.
    """

    sums: Tensor
    n_frames: Tensor

    @staticmethod
    def cat(parts: Sequence[AlphaStats]) -> AlphaStats:
        """Concatenate per-batch stats in order."""
        if not parts:
            return AlphaStats(torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
        return AlphaStats(torch.cat([p.sums for p in parts]), torch.cat([p.n_frames for p in parts]))


def alpha_stats(alphas: Sequence[Tensor] | Tensor, lengths: Tensor | None = None) -> AlphaStats:
    """Per-utterance ``sum_t alpha_t`` (float64) and ``T``.

    Args:
        alphas: a list of ``(frame,)`` tensors (valid frames only), or a padded
            ``(batch, frame)`` tensor with ``lengths``.
        lengths: ``(batch,)`` valid frames for a padded tensor (None: all valid).

    Raises:
        ValueError: a wrong shape, or alpha outside ``[0, 1]``.
    """
    if isinstance(alphas, AlphaStats):
        return alphas
    if isinstance(alphas, Tensor) and alphas.ndim == 2:
        batch, max_len = alphas.shape
        if lengths is None:
            lengths = torch.full((batch,), max_len, dtype=torch.long)
        lengths = lengths.to(device=alphas.device, dtype=torch.long)
        if lengths.shape != (batch,):
            raise ValueError(f"expected lengths of shape ({batch},), found {tuple(lengths.shape)}")
        valid = torch.arange(max_len, device=alphas.device)[None, :] < lengths[:, None]
        a64 = alphas.detach().to(torch.float64).masked_fill(~valid, 0.0)
        _check_alpha_range(a64[valid])
        return AlphaStats(a64.sum(dim=1).cpu(), lengths.cpu())
    sums, counts = [], []
    for index, alpha in enumerate(alphas):
        if not isinstance(alpha, Tensor) or alpha.ndim != 1:
            shape = tuple(alpha.shape) if isinstance(alpha, Tensor) else type(alpha).__name__
            raise ValueError(f"expected alpha {index} of shape (frame,), found {shape}")
        a64 = alpha.detach().to(torch.float64)
        _check_alpha_range(a64)
        sums.append(float(a64.sum()))
        counts.append(alpha.shape[0])
    return AlphaStats(torch.tensor(sums, dtype=torch.float64), torch.tensor(counts, dtype=torch.long))


def _check_alpha_range(a64: Tensor) -> None:
    if a64.numel() and not (float(a64.min()) >= 0.0 and float(a64.max()) <= 1.0 + 1e-6):  # (NaN fails)
        raise ValueError(f"alpha must lie in [0, 1], found [{float(a64.min()):.6g}, {float(a64.max()):.6g}]")


def _as_lams(lams: Tensor | Sequence[float] | float) -> Tensor:
    lam = torch.as_tensor(lams, dtype=torch.float64).reshape(-1)
    if lam.numel() and not bool(((lam >= 0) & (lam < LAMBDA_MAX)).all()):
        raise ValueError(f"lambdas must lie in [0, 2), found [{float(lam.min())}, {float(lam.max())}]")
    return lam


def _counts(sums: Tensor, n_frames: Tensor, lam: Tensor) -> Tensor:
    """``(U, G)`` int64 frame counts from the closed-form sum (see the module docstring)."""
    const = torch.relu(1 - lam)[None, :]
    scale = (torch.relu(lam) - 2 * torch.relu(lam - 1))[None, :]
    total = const * n_frames.to(torch.float64)[:, None] + scale * sums[:, None]
    fired = torch.floor(torch.clamp(total, min=1.0) + FIRE_EPS).to(torch.long)
    return torch.where(total > 0, fired, torch.zeros_like(fired))


def frame_counts(alphas: Sequence[Tensor] | AlphaStats, lams: Tensor | Sequence[float]) -> Tensor:
    """Output frames of every utterance at every lambda, without running CIF.

    Equal to ``cif(x, modify_alpha(alpha, lam)).lengths`` (up to float rounding
    in the last ulp of a sum that lands on an integer minus ``FIRE_EPS``).

    Args:
        alphas: one ``(frame,)`` tensor of 20 ms weights per utterance (valid
            frames only), or their :class:`AlphaStats`.
        lams: ``(G,)`` lambdas in ``[0, 2)``.

    Returns:
        ``(U, G)`` int64.
    """
    stats = alpha_stats(alphas)
    return _counts(stats.sums, stats.n_frames, _as_lams(lams))


def _total_frames(stats: AlphaStats, lams: np.ndarray) -> np.ndarray:
    """``(G,)`` total frames over the dataset, in chunks of lambdas."""
    out = np.zeros(len(lams), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(stats.sums)))
    for start in range(0, len(lams), step):
        lam = torch.as_tensor(lams[start:start + step], dtype=torch.float64)
        out[start:start + step] = _counts(stats.sums, stats.n_frames, lam).sum(dim=0).numpy()
    return out
