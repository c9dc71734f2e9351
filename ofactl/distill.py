"""The losses of once-for-all pretraining (REFERENCE.md, "OFA pretraining").

* :func:`pool_targets`: the teacher's layers pooled by the *same* CIF with the
  *same* ``alpha_mod`` as the student, so both sequences have equal length.
* :func:`distillation_loss`: DistilHuBERT's loss per predicted layer,
  ``mean L1 - mean log sigmoid(cos)``, averaged over the layers, padded frames
  excluded.
* :func:`guidance_loss`: pulls the *original* ``alpha`` towards guidance
  segments (each segment integrates to 1; every frame of a segment of length
  ``L`` gets ``1 / L``).

Pure functions; every sequence comes with its lengths.  Means are pooled over
the batch: every valid frame (and every segment) of the batch weighs the same,
so a batch gives what concatenating its utterances' valid frames gives (the
masked equivalent of s3prl's unmasked mean over the padded tensor).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ofactl.cif import cif
from ofactl.layers import valid_mask

__all__ = ["DistillLoss", "GuidanceLoss", "pool_targets", "distillation_loss", "guidance_loss"]


class DistillLoss(NamedTuple):
    """What :func:`distillation_loss` returns.

    Attributes:
        total: 0-d, ``mean_h (l1[h] + cos[h])``; carries the gradient.
        l1: ``(head,)`` mean absolute error per head over valid frames and dims.
        cos: ``(head,)`` ``-mean log sigmoid(cos(pred, target))`` per head over valid frames.
    """

    total: Tensor
    l1: Tensor
    cos: Tensor


class GuidanceLoss(NamedTuple):
    """What :func:`guidance_loss` returns: ``total = seg + frame`` (weights already applied), all 0-d."""

    total: Tensor
    seg: Tensor
    frame: Tensor


def pool_targets(
    teacher_hidden: Sequence[Tensor],
    layers: Sequence[int],
    alpha_mod: Tensor,
    frame_lengths: Tensor,
    *,
    detach: bool = True,
) -> tuple[Tensor, Tensor]:
    """Pool the teacher's layers with the student's CIF weights.

    All requested layers go through one :func:`~ofactl.cif.cif` call
    (concatenated along features), so the segmentation is computed once and
    is identical for every layer and for the student.

    Args:
        teacher_hidden: ``[h_0, ..., h_K]``, each ``(batch, frame, dim)`` at 20 ms
            (``TeacherOutput.hidden_states``).
        layers: which entries of ``teacher_hidden`` to pool, e.g. ``(4, 8, 12)``,
            in the order of the student's prediction heads.
        alpha_mod: ``(batch, frame)`` the student's modified weights
            (``StudentOutput.alpha_mod``).
        frame_lengths: ``(batch,)`` valid 20 ms frames (``StudentOutput.frame_lengths``).
        detach: stop the gradient from the targets into ``alpha_mod``
            (REFERENCE.md: "detach alpha on the teacher side", inferred).  With
            ``detach=False`` the targets also move the student's segmentation.

    Returns:
        ``(targets (batch, head, N, dim), lengths (batch,))``; ``N`` and
        ``lengths`` equal the student's (same CIF, same weights); zero beyond
        ``lengths``.
    """
    layers = [int(i) for i in layers]
    if not layers:
        raise ValueError("pool_targets needs at least one layer")
    bad = [i for i in layers if not 0 <= i < len(teacher_hidden)]
    if bad:
        raise ValueError(f"layers {bad} not available: the teacher gave hidden states 0..{len(teacher_hidden) - 1}")
    chosen = [teacher_hidden[i] for i in layers]
    shape = chosen[0].shape
    if any(h.shape != shape for h in chosen):
        raise ValueError(f"teacher layers differ in shape: {[tuple(h.shape) for h in chosen]}")
    if len(shape) != 3 or tuple(shape[:2]) != tuple(alpha_mod.shape):
        raise ValueError(f"expected teacher layers of shape {tuple(alpha_mod.shape)} + (dim,) (batch, frame, dim) "
                         f"to match alpha_mod, found {tuple(shape)}")
    batch, _, dim = shape
    x = torch.cat(chosen, dim=-1).float()  # (batch, frame, head * dim); a bf16 teacher's targets pool in float32
    weights = alpha_mod.detach() if detach else alpha_mod
    pooled = cif(x, weights, frame_lengths)
    targets = pooled.out.view(batch, pooled.out.shape[1], len(layers), dim).permute(0, 2, 1, 3)
    return targets, pooled.lengths


def distillation_loss(predictions: Tensor, targets: Tensor, lengths: Tensor) -> DistillLoss:
    """DistilHuBERT's loss, padded frames excluded.

    Per head ``h``: ``l1[h] = mean |pred - target|`` over the batch's valid
    frames and all dims; ``cos[h] = -mean log sigmoid(cos_sim(pred, target))``
    over the valid frames.  ``total = mean_h (l1[h] + cos[h])``.  Only valid
    frames enter the computation (padding cannot produce NaN gradients), and
    a batch without a single valid frame gives a 0 loss that still has a
    graph (``backward()`` works, gradients are zero).

    Args:
        predictions: ``(batch, head, N, dim)`` the student's heads (``StudentOutput.predictions``).
        targets: ``(batch, head, N, dim)`` from :func:`pool_targets`.
        lengths: ``(batch,)`` valid output frames.

    Returns:
        :class:`DistillLoss` ``(total, l1 (head,), cos (head,))``, in at least float32.
    """
    if predictions.ndim != 4 or predictions.shape != targets.shape:
        raise ValueError(f"expected predictions and targets of one shape (batch, head, N, dim), found "
                         f"{tuple(predictions.shape)} and {tuple(targets.shape)}")
    batch, heads, n_max, dim = predictions.shape
    if lengths.shape != (batch,):
        raise ValueError(f"expected lengths of shape ({batch},), found {tuple(lengths.shape)}")
    dtype = torch.promote_types(predictions.dtype, torch.float32)
    mask = valid_mask(lengths.to(predictions.device), n_max)  # (batch, N)
    # (batch, N, head, dim)[mask] -> (frames, head, dim): only valid frames are computed on.
    p = predictions.to(dtype).transpose(1, 2)[mask]
    t = targets.to(dtype).transpose(1, 2)[mask].detach()
    frames = p.shape[0]
    if frames == 0:
        zero = predictions.to(dtype).sum() * 0.0  # keeps the graph
        zeros = torch.zeros(heads, dtype=dtype, device=predictions.device)
        return DistillLoss(zero, zeros, zeros)
    l1 = (p - t).abs().mean(dim=(0, 2))  # (head,)
    cos = -F.logsigmoid(F.cosine_similarity(p, t, dim=-1)).mean(dim=0)  # (head,)
    total = (l1 + cos).mean()
    return DistillLoss(total, l1, cos)


def guidance_loss(
    alpha: Tensor,
    frame_lengths: Tensor,
    segment_ends: Tensor,
    segment_counts: Tensor,
    w_seg: float = 0.05,
    w_frame: float = 0.5,
) -> GuidanceLoss:
    """Guidance of the *original* ``alpha`` (not ``alpha_mod``) by segments.

    Segment ``k`` (1-based) of utterance ``b`` covers frames
    ``e_{k-1} + 1 .. e_k`` (``e_0 = -1``).

    * segment loss: ``w_seg * mean_k |cumsum(alpha)[e_k] - k|`` (each segment
      integrates to 1);
    * frame loss: ``w_frame * mean_t |alpha_t - 1 / L_k|`` for every frame ``t``
      of segment ``k`` of length ``L_k``; frames after the last segment end
      have no target and are left out.

    Both means are pooled over the batch (every segment, every covered frame
    weighs the same).  An utterance with no segment (``segment_counts[b] == 0``,
    e.g. one missing from the segment table) contributes nothing; a batch
    without any gives 0 with a graph.

    Ends at or beyond the utterance's valid frames (the caller should already
    have cropped them, :meth:`ofactl.segments.SegmentTable.crop`): the first
    such end is clipped to ``frame_lengths[b] - 1`` and the later ones are
    ignored, which is the crop rule for a window starting at frame 0 (the cut
    segment keeps its part inside).

    Args:
        alpha: ``(batch, frame)`` the alpha module's weights (``StudentOutput.alpha``).
        frame_lengths: ``(batch,)`` valid frames.
        segment_ends: ``(batch, K_max)`` int64 end frames (inclusive, 20 ms),
            strictly increasing within ``segment_counts[b]``; entries beyond it
            are padding (any value).
        segment_counts: ``(batch,)`` number of segments per utterance.
        w_seg, w_frame: loss weights (the authors' wav2vec2 port: 0.05, 0.5).

    Returns:
        :class:`GuidanceLoss` ``(total, seg, frame)``, weighted, 0-d, at least float32.
    """
    if alpha.ndim != 2:
        raise ValueError(f"expected alpha of shape (batch, frame), found {tuple(alpha.shape)}")
    batch, max_len = alpha.shape
    device = alpha.device
    if segment_ends.ndim != 2 or segment_ends.shape[0] != batch:
        raise ValueError(f"expected segment_ends of shape ({batch}, K_max), found {tuple(segment_ends.shape)}")
    if frame_lengths.shape != (batch,) or segment_counts.shape != (batch,):
        raise ValueError(f"expected frame_lengths and segment_counts of shape ({batch},), found "
                         f"{tuple(frame_lengths.shape)} and {tuple(segment_counts.shape)}")
    dtype = torch.promote_types(alpha.dtype, torch.float32)
    k_max = segment_ends.shape[1]
    lengths = frame_lengths.to(device=device, dtype=torch.long)
    ends = segment_ends.to(device=device, dtype=torch.long)
    counts = segment_counts.to(device=device, dtype=torch.long)

    with torch.no_grad():
        k_index = torch.arange(k_max, device=device)[None, :]
        listed = k_index < counts[:, None]  # (batch, K)
        prev = F.pad(ends, (1, 0), value=-1)[:, :-1]
        if bool((listed & ((ends <= prev) | (ends < 0))).any()):
            raise ValueError("segment_ends must be non-negative and strictly increasing within segment_counts")
        last = (lengths - 1)[:, None]
        # Keep a segment if it starts inside the utterance; clip its end to the last valid frame.
        seg_valid = listed & (prev < last)
        ends_c = torch.minimum(ends, last).clamp(min=0)
        n_seg = seg_valid.sum(dim=1)  # (batch,) segments kept (a prefix of the listed ones)

    alpha = alpha.to(dtype).masked_fill(~valid_mask(lengths, max_len), 0.0)
    zero = alpha.sum() * 0.0  # 0 with a graph
    if max_len == 0 or k_max == 0:
        return GuidanceLoss(zero, zero, zero)

    # Segment loss: cumsum(alpha)[e_k] should be k.
    csum = torch.cumsum(alpha, dim=1)
    at_ends = torch.gather(csum, 1, ends_c)  # (batch, K)
    k_target = (k_index + 1).to(dtype)
    seg_err = torch.where(seg_valid, (at_ends - k_target).abs(), torch.zeros_like(at_ends))
    seg = w_seg * seg_err.sum() / seg_valid.sum().clamp(min=1)

    # Frame loss: frame t belongs to the first segment whose end is >= t.
    with torch.no_grad():
        big = max_len + 1
        sorted_ends = torch.where(seg_valid, ends_c, torch.full_like(ends_c, big))
        t_index = torch.arange(max_len, device=device).expand(batch, max_len).contiguous()
        seg_of_t = torch.searchsorted(sorted_ends, t_index)  # (batch, T) in [0, K]
        covered = (seg_of_t < n_seg[:, None]) & valid_mask(lengths, max_len)
        seg_len = sorted_ends - F.pad(sorted_ends, (1, 0), value=-1)[:, :-1]  # L_k = e_k - e_{k-1}
        seg_len = F.pad(seg_len, (0, 1), value=1)  # a slot for frames past the last segment
        target = 1.0 / torch.gather(seg_len, 1, seg_of_t).clamp(min=1).to(dtype)
    frame_err = torch.where(covered, (alpha - target).abs(), torch.zeros_like(alpha))
    frame = w_frame * frame_err.sum() / covered.sum().clamp(min=1)
    return GuidanceLoss(seg + frame + zero, seg + zero, frame + zero)
