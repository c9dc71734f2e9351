"""Distillation and guidance losses against plain per-utterance references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.cif import cif, modify_alpha
from ofactl.distill import distillation_loss, guidance_loss, pool_targets
from ofactl.model import OFAStudent, StudentConfig
from ofactl.teacher import load_teacher

# --------------------------------------------------------------------------- references


def distill_reference(pred: torch.Tensor, tgt: torch.Tensor, lengths: list[int]) -> tuple[float, list, list]:
    """Concatenate every utterance's valid frames per head, then DistilHuBERT's formulas."""
    heads = pred.shape[1]
    l1s, coss = [], []
    for h in range(heads):
        p = torch.cat([pred[b, h, :n] for b, n in enumerate(lengths)]).double()
        t = torch.cat([tgt[b, h, :n] for b, n in enumerate(lengths)]).double()
        l1s.append(float(F.l1_loss(p, t)))
        coss.append(float(-F.logsigmoid(F.cosine_similarity(p, t, dim=-1)).mean()))
    total = sum(a + c for a, c in zip(l1s, coss)) / heads
    return total, l1s, coss


def guidance_reference(alpha: torch.Tensor, lengths: list[int], ends: list[list[int]], w_seg=0.05, w_frame=0.5):
    """Loop over utterances and segments: clip ends to the valid frames, then the REFERENCE.md formulas."""
    seg_errs, frame_errs = [], []
    for b, n in enumerate(lengths):
        kept = []
        for e in ends[b]:
            if kept and kept[-1] >= n - 1:
                break
            if n == 0:
                break
            kept.append(min(e, n - 1))
        a = alpha[b, :n].double()
        c = torch.cumsum(a, 0)
        prev = -1
        for k, e in enumerate(kept, start=1):
            seg_errs.append(abs(float(c[e]) - k))
            length = e - prev
            for t in range(prev + 1, e + 1):
                frame_errs.append(abs(float(a[t]) - 1.0 / length))
            prev = e
    seg = w_seg * sum(seg_errs) / max(len(seg_errs), 1)
    frame = w_frame * sum(frame_errs) / max(len(frame_errs), 1)
    return seg, frame


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    k = max((len(r) for r in rows), default=0)
    ends = torch.full((len(rows), k), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        ends[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ends, torch.tensor([len(r) for r in rows], dtype=torch.long)


def random_batch(gen, batch=3, heads=2, n_max=7, dim=5, lengths=None):
    lengths = lengths if lengths is not None else [int(v) for v in torch.randint(0, n_max + 1, (batch,), generator=gen)]
    pred = torch.randn(batch, heads, n_max, dim, generator=gen)
    tgt = torch.randn(batch, heads, n_max, dim, generator=gen)
    return pred, tgt, torch.tensor(lengths, dtype=torch.long)


# --------------------------------------------------------------------------- pool_targets


def test_pool_targets_at_lambda_zero_equal_the_teacher_layers_exactly():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 4, 0, 7])
    hidden = [torch.randn(4, 9, 6, generator=gen) for _ in range(5)]
    alpha = torch.rand(4, 9, generator=gen)
    alpha_mod = modify_alpha(alpha, 0.0, lengths)
    targets, out_lengths = pool_targets(hidden, [1, 4, 2], alpha_mod, lengths)
    assert torch.equal(out_lengths, lengths)
    assert targets.shape == (4, 3, 9, 6)
    for b, n in enumerate(lengths.tolist()):
        for h, layer in enumerate([1, 4, 2]):
            assert torch.equal(targets[b, h, :n], hidden[layer][b, :n])
            assert torch.count_nonzero(targets[b, h, n:]) == 0


@pytest.mark.parametrize("lam", [0.4, 1.0, 1.7])
def test_pool_targets_equal_one_cif_call_per_layer(lam):
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([12, 5, 9])
    hidden = [torch.randn(3, 12, 4, generator=gen) for _ in range(4)]
    alpha_mod = modify_alpha(torch.rand(3, 12, generator=gen), lam, lengths)
    targets, out_lengths = pool_targets(hidden, [3, 1], alpha_mod, lengths)
    for h, layer in enumerate([3, 1]):
        ref = cif(hidden[layer], alpha_mod, lengths)
        assert torch.equal(ref.lengths, out_lengths)
        torch.testing.assert_close(targets[:, h], ref.out, rtol=0, atol=1e-6)


def test_pool_targets_detach_is_a_keyword_defaulting_to_true():
    gen = torch.Generator().manual_seed(2)
    lengths = torch.tensor([8, 6])
    hidden = [torch.randn(2, 8, 3, generator=gen) for _ in range(2)]
    alpha = torch.rand(2, 8, generator=gen, requires_grad=True)
    alpha_mod = modify_alpha(alpha, 1.0, lengths)
    targets, _ = pool_targets(hidden, [1], alpha_mod, lengths)
    assert not targets.requires_grad
    targets, _ = pool_targets(hidden, [1], alpha_mod, lengths, detach=False)
    (targets ** 2).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_pool_targets_refuses_missing_layers_and_mismatched_shapes():
    hidden = [torch.zeros(2, 5, 3) for _ in range(3)]
    alpha_mod = torch.ones(2, 5)
    lengths = torch.tensor([5, 5])
    with pytest.raises(ValueError, match="layers"):
        pool_targets(hidden, [3], alpha_mod, lengths)
    with pytest.raises(ValueError, match="alpha_mod"):
        pool_targets(hidden, [1], torch.ones(2, 4), lengths)


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset("tiny")).eval()
    teacher = load_teacher("tiny-random")
    return student, teacher


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0, 1.9])
def test_pooled_teacher_and_student_lengths_are_equal(tiny_models, lam):
    student, teacher = tiny_models
    gen = torch.Generator().manual_seed(3)
    audio = torch.randn(3, 8000, generator=gen) * 0.1
    audio_lengths = torch.tensor([8000, 5000, 2500])
    with torch.no_grad():
        s = student(audio, audio_lengths, lam)
        t = teacher(audio, audio_lengths, layers=student.config.target_layers)
    targets, lengths = pool_targets(t.hidden_states, student.config.target_layers, s.alpha_mod, s.frame_lengths)
    assert torch.equal(lengths, s.lengths)
    assert targets.shape == s.predictions.shape
    if lam == 0.0:
        assert torch.equal(lengths, s.frame_lengths)
    loss = distillation_loss(s.predictions, targets, s.lengths)
    assert math.isfinite(float(loss.total)) and float(loss.total) > 0


# --------------------------------------------------------------------------- distillation_loss


def test_distillation_loss_matches_the_concatenated_reference():
    gen = torch.Generator().manual_seed(4)
    pred, tgt, lengths = random_batch(gen, batch=4, heads=3, n_max=9, dim=6, lengths=[9, 3, 0, 6])
    out = distillation_loss(pred, tgt, lengths)
    total, l1s, coss = distill_reference(pred, tgt, lengths.tolist())
    assert float(out.total) == pytest.approx(total, rel=1e-5)
    assert out.l1.tolist() == pytest.approx(l1s, rel=1e-5)
    assert out.cos.tolist() == pytest.approx(coss, rel=1e-5)


def test_distillation_loss_batch_equals_frame_weighted_one_by_one_and_ignores_padding():
    gen = torch.Generator().manual_seed(5)
    pred, tgt, lengths = random_batch(gen, batch=3, heads=2, n_max=8, dim=4, lengths=[8, 2, 5])
    garbage_pred, garbage_tgt = pred.clone(), tgt.clone()
    for b, n in enumerate(lengths.tolist()):
        garbage_pred[b, :, n:] = float("nan")
        garbage_tgt[b, :, n:] = 1e6
    batch = distillation_loss(garbage_pred, garbage_tgt, lengths)
    singles = [distillation_loss(pred[b : b + 1, :, :n], tgt[b : b + 1, :, :n], torch.tensor([n]))
               for b, n in enumerate(lengths.tolist())]
    n_total = int(lengths.sum())
    expected = sum(n * float(s.total) for n, s in zip(lengths.tolist(), singles)) / n_total
    assert float(batch.total) == pytest.approx(expected, rel=1e-5)
    assert float(batch.total) == pytest.approx(float(distillation_loss(pred, tgt, lengths).total), rel=1e-6)


def test_distillation_loss_gradient_reaches_valid_predictions_only():
    gen = torch.Generator().manual_seed(6)
    pred, tgt, lengths = random_batch(gen, batch=2, heads=2, n_max=6, dim=3, lengths=[6, 2])
    pred.requires_grad_(True)
    distillation_loss(pred, tgt, lengths).total.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[0].abs().sum(-1) > 0).all()
    assert (pred.grad[1, :, :2].abs().sum(-1) > 0).all()
    assert torch.count_nonzero(pred.grad[1, :, 2:]) == 0


def test_distillation_loss_of_zero_frames_is_zero_with_a_graph():
    pred = torch.zeros(2, 3, 4, 5, requires_grad=True)
    out = distillation_loss(pred, torch.zeros(2, 3, 4, 5), torch.tensor([0, 0]))
    assert float(out.total.detach()) == 0.0 and out.l1.shape == (3,) and out.cos.shape == (3,)
    out.total.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))
    empty = torch.zeros(2, 3, 0, 5, requires_grad=True)  # N = 0
    out = distillation_loss(empty, torch.zeros(2, 3, 0, 5), torch.tensor([0, 0]))
    out.total.backward()
    assert float(out.total.detach()) == 0.0


def test_distillation_loss_is_minimal_for_equal_predictions():
    gen = torch.Generator().manual_seed(7)
    pred, _, lengths = random_batch(gen, lengths=[7, 3, 5])
    out = distillation_loss(pred, pred.clone(), lengths)
    assert out.l1.abs().max() == 0
    assert out.cos.tolist() == pytest.approx([-math.log(1 / (1 + math.exp(-1)))] * 2, rel=1e-5)


def test_distillation_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        distillation_loss(torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 5, 5), torch.tensor([1, 1]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 3), st.integers(0, 6), st.integers(1, 5))
def test_distillation_loss_property_matches_reference(seed, batch, heads, n_max, dim):
    gen = torch.Generator().manual_seed(seed)
    pred, tgt, lengths = random_batch(gen, batch=batch, heads=heads, n_max=n_max, dim=dim)
    out = distillation_loss(pred, tgt, lengths)
    if int(lengths.sum()) == 0:
        assert float(out.total) == 0.0
        return
    total, l1s, coss = distill_reference(pred, tgt, lengths.tolist())
    assert float(out.total) == pytest.approx(total, rel=1e-4, abs=1e-6)
    assert out.l1.tolist() == pytest.approx(l1s, rel=1e-4, abs=1e-6)


# --------------------------------------------------------------------------- guidance_loss


def exact_alpha(ends: list[int], length: int) -> torch.Tensor:
    alpha = torch.zeros(length, dtype=torch.float64)
    prev = -1
    for e in ends:
        alpha[prev + 1 : e + 1] = 1.0 / (e - prev)
        prev = e
    return alpha


def test_guidance_loss_is_zero_for_alpha_that_matches_the_segments():
    rows = [[2, 5, 6, 11], [0, 3], [4]]
    lengths = [12, 6, 5]
    alpha = torch.zeros(3, 12, dtype=torch.float64)
    for b, (r, n) in enumerate(zip(rows, lengths)):
        alpha[b, :n] = exact_alpha(r, n)
        alpha[b, r[-1] + 1 : n] = 0.37  # frames after the last end have no target
    ends, counts = padded(rows)
    g = guidance_loss(alpha, torch.tensor(lengths), ends, counts)
    assert float(g.total) == pytest.approx(0.0, abs=1e-12)
    noisy = alpha.clone()
    noisy[0, 3] += 0.1
    g = guidance_loss(noisy, torch.tensor(lengths), ends, counts)
    assert float(g.seg) > 0 and float(g.frame) > 0
    assert float(g.total) == pytest.approx(float(g.seg) + float(g.frame))


def test_guidance_loss_matches_the_loop_reference_and_weights():
    gen = torch.Generator().manual_seed(8)
    rows = [[1, 4, 8, 9, 13], [2, 3, 7], [], [0, 5, 20]]
    lengths = [14, 9, 6, 10]  # utterance 3: end 20 is beyond its 10 frames (clipped to 9)
    alpha = torch.rand(4, 14, generator=gen)
    ends, counts = padded(rows)
    for w_seg, w_frame in [(0.05, 0.5), (1.0, 0.0), (0.0, 2.0)]:
        g = guidance_loss(alpha, torch.tensor(lengths), ends, counts, w_seg=w_seg, w_frame=w_frame)
        seg, frame = guidance_reference(alpha, lengths, rows, w_seg, w_frame)
        assert float(g.seg) == pytest.approx(seg, rel=1e-5, abs=1e-7)
        assert float(g.frame) == pytest.approx(frame, rel=1e-5, abs=1e-7)


def test_guidance_loss_clips_ends_like_a_crop_from_frame_zero():
    gen = torch.Generator().manual_seed(9)
    alpha = torch.rand(1, 10, generator=gen)
    full = padded([[3, 7, 12, 15]])
    cropped = padded([[3, 7, 9]])  # SegmentTable.crop(id, 0, 10)
    a = guidance_loss(alpha, torch.tensor([10]), *full)
    b = guidance_loss(alpha, torch.tensor([10]), *cropped)
    assert float(a.seg) == pytest.approx(float(b.seg)) and float(a.frame) == pytest.approx(float(b.frame))


def test_guidance_loss_ignores_utterances_without_segments_and_padding_values():
    gen = torch.Generator().manual_seed(10)
    alpha = torch.rand(3, 8, generator=gen)
    lengths = torch.tensor([8, 5, 7])
    ends = torch.tensor([[1, 4, 7], [99, 99, 99], [2, 6, 555]])
    counts = torch.tensor([3, 0, 2])
    g = guidance_loss(alpha, lengths, ends, counts)
    seg, frame = guidance_reference(alpha, lengths.tolist(), [[1, 4, 7], [], [2, 6]])
    assert float(g.seg) == pytest.approx(seg, rel=1e-5) and float(g.frame) == pytest.approx(frame, rel=1e-5)


def test_guidance_loss_gradient_reaches_alpha_on_covered_frames():
    gen = torch.Generator().manual_seed(11)
    alpha = torch.rand(2, 9, generator=gen, requires_grad=True)
    ends, counts = padded([[2, 5], [3]])
    guidance_loss(alpha, torch.tensor([9, 6]), ends, counts).total.backward()
    assert (alpha.grad[0, :6] != 0).all() and (alpha.grad[1, :4] != 0).all()
    assert torch.count_nonzero(alpha.grad[0, 6:]) == 0 and torch.count_nonzero(alpha.grad[1, 4:]) == 0


def test_guidance_loss_without_any_segment_is_zero_with_a_graph():
    alpha = torch.rand(2, 6, requires_grad=True)
    for ends, counts, lengths in [(torch.zeros(2, 0, dtype=torch.long), torch.tensor([0, 0]), torch.tensor([6, 4])),
                                  (torch.tensor([[2], [3]]), torch.tensor([1, 1]), torch.tensor([0, 0]))]:
        g = guidance_loss(alpha, lengths, ends, counts)
        assert float(g.total.detach()) == 0.0
        g.total.backward()
        assert torch.isfinite(alpha.grad).all()
    g = guidance_loss(torch.zeros(2, 0, requires_grad=True), torch.tensor([0, 0]), torch.tensor([[0], [1]]),
                      torch.tensor([1, 1]))
    g.total.backward()


def test_guidance_loss_refuses_unsorted_ends():
    with pytest.raises(ValueError, match="strictly increasing"):
        guidance_loss(torch.rand(1, 8), torch.tensor([8]), torch.tensor([[3, 3]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="strictly increasing"):
        guidance_loss(torch.rand(1, 8), torch.tensor([8]), torch.tensor([[-1, 3]]), torch.tensor([2]))


@st.composite
def segment_batches(draw):
    batch = draw(st.integers(1, 4))
    t_max = draw(st.integers(1, 12))
    lengths, rows = [], []
    for _ in range(batch):
        n = draw(st.integers(0, t_max))
        ends = sorted(draw(st.sets(st.integers(0, t_max + 3), max_size=6)))
        lengths.append(n)
        rows.append(ends)
    return t_max, lengths, rows, draw(st.integers(0, 10_000))


@settings(max_examples=60, deadline=None)
@given(segment_batches())
def test_guidance_loss_property_matches_reference(case):
    t_max, lengths, rows, seed = case
    alpha = torch.rand(len(lengths), t_max, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ends, counts = padded(rows)
    g = guidance_loss(alpha, torch.tensor(lengths), ends, counts)
    seg, frame = guidance_reference(alpha, lengths, rows)
    assert float(g.seg) == pytest.approx(seg, rel=1e-9, abs=1e-12)
    assert float(g.frame) == pytest.approx(frame, rel=1e-9, abs=1e-12)
