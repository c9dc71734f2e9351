"""CIF and modify_alpha against plain references (a loop over time, the paper's formulas)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.cif import FIRE_EPS, AlphaModule, cif, modify_alpha

LAMS = [0.0, 0.3, 1.0, 1.5, 1.99]


# --------------------------------------------------------------------------- references


def cif_loop(x: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Textbook integrate-and-fire over one utterance, one frame at a time.

    ``x``: (T, D), ``alpha``: (T,).  Keeps the weight accumulated in the current
    output; when it reaches 1 (within FIRE_EPS) the frame's weight is split: the
    part up to 1 closes the output, the rest starts the next one.  The partial
    tail is dropped.  Returns (out (N, D), ambiguous) where ``ambiguous`` flags an
    internal fire that only the float tolerance triggered (a measure-zero event
    for random weights; callers redraw).
    """
    outs = []
    acc_w = torch.zeros((), dtype=torch.float64)
    acc = torch.zeros(x.shape[1], dtype=torch.float64)
    ambiguous = False
    for t in range(x.shape[0]):
        a = alpha[t].double()
        xt = x[t].double()
        level = float(acc_w.detach()) + float(a.detach())
        if level >= 1.0 - FIRE_EPS:
            if level < 1.0 and t < x.shape[0] - 1:
                ambiguous = True
            first = torch.minimum(1.0 - acc_w, a)
            outs.append(acc + first * xt)
            acc_w = a - first
            acc = acc_w * xt
        else:
            acc_w = acc_w + a
            acc = acc + a * xt
    out = torch.stack(outs) if outs else torch.zeros(0, x.shape[1], dtype=torch.float64)
    return out, ambiguous


def modify_alpha_formula(alpha: torch.Tensor, lam: float) -> torch.Tensor:
    """Paper eq. 1 (lam < 1) and eq. 2 (lam >= 1) for one utterance's valid frames."""
    if lam < 1:
        a = lam * alpha + (1 - lam)
    else:
        a = (2 - lam) * alpha
    total = a.sum()
    return a / torch.clamp(total, max=1.0) if float(total.detach()) > 0 else a


def random_batch(seed: int, lengths: list[int], dim: int = 5, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    batch, t_max = len(lengths), max(lengths)
    x = torch.randn(batch, t_max, dim, generator=g, dtype=dtype)
    alpha = torch.rand(batch, t_max, generator=g, dtype=dtype)
    for b, n in enumerate(lengths):  # garbage in the padding must not matter
        x[b, n:] = 1e3
        alpha[b, n:] = 0.7
    return x, alpha, torch.tensor(lengths)


# --------------------------------------------------------------------------- cif vs loop


@pytest.mark.parametrize("lam", LAMS)
def test_cif_matches_loop_values_and_gradients(lam):
    """Outputs and gradients w.r.t. x and the model's alpha (through modify_alpha)
    equal the loop's through the paper's formula, for a padded batch."""
    lengths = [37, 50, 1, 0, 23]
    checked = 0
    for seed in range(20):
        x, alpha, lens = random_batch(seed, lengths)
        x.requires_grad_(True)
        alpha.requires_grad_(True)
        res = cif(x, modify_alpha(alpha, lam, lens), lens)
        proj = torch.randn(res.out.shape, generator=torch.Generator().manual_seed(99))
        (res.out * proj).sum().backward()

        refs = []
        ambiguous = False
        for b, n in enumerate(lengths):
            xb = x[b, :n].detach().clone().requires_grad_(True)
            ab = alpha[b, :n].detach().clone().requires_grad_(True)
            out_b, amb = cif_loop(xb, modify_alpha_formula(ab, lam))
            ambiguous |= amb
            refs.append((xb, ab, out_b))
        if ambiguous:
            continue
        for b, (xb, ab, out_b) in enumerate(refs):
            n, n_out = lengths[b], out_b.shape[0]
            assert int(res.lengths[b]) == n_out
            torch.testing.assert_close(res.out[b, :n_out].double(), out_b, rtol=1e-5, atol=1e-6)
            assert torch.all(res.out[b, n_out:] == 0)
            if n_out:
                (out_b * proj[b, :n_out].double()).sum().backward()
            gx = xb.grad if xb.grad is not None else torch.zeros_like(xb)
            ga = ab.grad if ab.grad is not None else torch.zeros_like(ab)
            torch.testing.assert_close(x.grad[b, :n], gx.float(), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(alpha.grad[b, :n], ga.float(), rtol=1e-5, atol=1e-5)
            if lam > 0 and n_out and n > 1:
                assert ga.abs().max() > 0, "alpha must receive gradient"
            assert torch.all(x.grad[b, n:] == 0), "padding received gradient"
            assert torch.all(alpha.grad[b, n:] == 0), "padding received gradient"
        checked += 1
        if checked == 3:
            break
    assert checked == 3, "too many ambiguous draws"


# --------------------------------------------------------------------------- edge cases


def test_alpha_all_ones_is_identity_exactly():
    x = torch.randn(3, 41, 7)
    res = cif(x, torch.ones(3, 41))
    assert res.lengths.tolist() == [41, 41, 41]
    assert torch.equal(res.out, x)
    assert torch.equal(res.centers, torch.arange(41, dtype=torch.float64).expand(3, 41))


def test_lambda_zero_is_identity_with_padding():
    x, alpha, lens = random_batch(1, [20, 9, 0])
    res = cif(x, modify_alpha(alpha, 0.0, lens), lens)
    assert res.lengths.tolist() == [20, 9, 0]
    for b, n in enumerate([20, 9, 0]):
        assert torch.equal(res.out[b, :n], x[b, :n])
        assert torch.all(res.out[b, n:] == 0)


@pytest.mark.parametrize(
    ("total", "expected"),
    [(3 - 1e-3, 2), (3 + 1e-3, 3), (3 - FIRE_EPS / 10, 3), (3.0, 3), (1 - 1e-3, 0), (1e-9, 0)],
)
def test_sums_near_an_integer(total, expected):
    t = 10
    alpha = torch.full((1, t), total / t, dtype=torch.float64)
    x = torch.ones(1, t, 2, dtype=torch.float64)
    res = cif(x, alpha)
    assert int(res.lengths[0]) == expected
    assert res.out.shape == (1, expected, 2)
    # every complete output's weights sum to 1 (within the fire tolerance)
    torch.testing.assert_close(res.out, torch.ones_like(res.out), rtol=0, atol=2 * FIRE_EPS)


def test_zero_length_utterance_in_batch():
    x = torch.randn(3, 6, 4, requires_grad=True)
    alpha = torch.rand(3, 6, requires_grad=True)
    lens = torch.tensor([6, 0, 3])
    res = cif(x, modify_alpha(alpha, 0.5, lens), lens)
    assert int(res.lengths[1]) == 0
    assert torch.all(res.out[1] == 0)
    res.out.sum().backward()
    assert torch.isfinite(alpha.grad).all() and torch.isfinite(x.grad).all()
    assert torch.all(alpha.grad[1] == 0) and torch.all(x.grad[1] == 0)


def test_all_empty_batch_and_zero_frames():
    res = cif(torch.randn(2, 0, 3), torch.zeros(2, 0))
    assert res.out.shape == (2, 0, 3) and res.lengths.tolist() == [0, 0]
    res = cif(torch.randn(2, 4, 3), torch.zeros(2, 4))
    assert res.out.shape == (2, 0, 3)


def test_single_frame():
    x = torch.randn(1, 1, 3)
    assert torch.equal(cif(x, torch.ones(1, 1)).out, x)
    assert cif(x, torch.full((1, 1), 0.5)).lengths.tolist() == [0]
    # the guard keeps one frame for any lam
    for lam in LAMS:
        alpha_mod = modify_alpha(torch.full((1, 1), 0.01), lam)
        res = cif(x, alpha_mod)
        assert res.lengths.tolist() == [1]
        torch.testing.assert_close(res.out, x)


def test_half_precision_alpha():
    torch.manual_seed(0)
    module = AlphaModule(16).half()
    x = torch.randn(2, 40, 16).half()
    lens = torch.tensor([40, 25])
    alpha = module(x, lens)
    assert alpha.dtype == torch.float16
    for lam in LAMS:
        alpha_mod = modify_alpha(alpha, lam, lens)
        assert alpha_mod.dtype == torch.float32
        res = cif(x, alpha_mod, lens)
        assert res.out.dtype == torch.float16
        ref = cif(x.float(), modify_alpha(alpha.float(), lam, lens), lens)
        assert torch.equal(res.lengths, ref.lengths)
        torch.testing.assert_close(res.out.float(), ref.out, rtol=2e-3, atol=2e-3)


def test_garbage_in_padding_reaches_no_output_or_gradient():
    """NaN and inf in padded frames (of x and of alpha) change neither outputs nor gradients."""
    x, alpha, lens = random_batch(5, [30, 12, 0, 7])
    results = []
    for fill in (0.0, float("nan"), float("inf")):
        xf, af = x.clone(), alpha.clone()
        for b, n in enumerate(lens.tolist()):
            xf[b, n:] = fill
            af[b, n:] = fill
        xf.requires_grad_(True)
        af.requires_grad_(True)
        res = cif(xf, modify_alpha(af, 0.6, lens), lens)
        (res.out * torch.randn(res.out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
        assert torch.isfinite(res.out).all() and torch.isfinite(xf.grad).all() and torch.isfinite(af.grad).all()
        results.append((res.out, res.centers, xf.grad, af.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [1.0, 0.6, 0.3])
def test_gradcheck(scale):
    """Analytic gradients w.r.t. x and alpha (padded batch, float64) equal finite differences.

    Generic weights: no prefix sum sits on a firing threshold, where the
    output has a kink (as for lam = 0, alpha == 1, or a guard-scaled sum of 1).
    """
    x, alpha, lens = random_batch(3, [11, 7, 0], dim=3, dtype=torch.float64)
    x.requires_grad_(True)
    alpha = (alpha * scale).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda xx, aa: cif(xx, aa, lens).out, (x, alpha), atol=1e-7)


def test_gradient_to_one_input_only():
    """x alone or alpha alone may require a gradient; each gets the one it gets when both do."""
    x, alpha, lens = random_batch(8, [25, 18])
    alpha_mod = modify_alpha(alpha, 1.2, lens).detach()
    proj = torch.randn(cif(x, alpha_mod, lens).out.shape)
    both = (x.clone().requires_grad_(True), alpha_mod.clone().requires_grad_(True))
    (cif(*both, lens).out * proj).sum().backward()
    only_x = x.clone().requires_grad_(True)
    (cif(only_x, alpha_mod, lens).out * proj).sum().backward()
    only_alpha = alpha_mod.clone().requires_grad_(True)
    (cif(x, only_alpha, lens).out * proj).sum().backward()
    assert torch.equal(only_x.grad, both[0].grad) and torch.equal(only_alpha.grad, both[1].grad)


def test_bfloat16_accumulates_in_float32():
    x, alpha, lens = random_batch(4, [300, 220])
    alpha_mod = modify_alpha(alpha, 1.5, lens)
    res = cif(x.bfloat16(), alpha_mod, lens)
    ref = cif(x.bfloat16().float(), alpha_mod, lens)
    assert res.out.dtype == torch.bfloat16
    torch.testing.assert_close(res.out, ref.out.bfloat16(), rtol=0, atol=0)  # one rounding, at the end


def test_non_contiguous_input():
    x, alpha, lens = random_batch(6, [20, 13], dim=4)
    x_t = x.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    alpha_mod = modify_alpha(alpha, 0.8, lens)
    assert not x_t.is_contiguous()
    assert torch.equal(cif(x_t, alpha_mod, lens).out, cif(x, alpha_mod, lens).out)


def test_empty_output_keeps_the_graph():
    x = torch.randn(2, 4, 3, requires_grad=True)
    alpha = torch.full((2, 4), 0.1, requires_grad=True)
    res = cif(x, alpha)
    assert res.out.shape == (2, 0, 3) and res.centers.shape == (2, 0)
    res.out.sum().backward()
    assert torch.all(x.grad == 0) and torch.all(alpha.grad == 0)
    res = cif(torch.randn(0, 5, 3), torch.rand(0, 5))
    assert res.out.shape == (0, 0, 3) and res.lengths.shape == (0,)


def test_rejects_bad_shapes_and_values():
    with pytest.raises(ValueError, match="batch, frame, feature"):
        cif(torch.randn(4, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match="alpha of shape"):
        cif(torch.randn(2, 4, 3), torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cif(torch.randn(1, 4, 3), torch.full((1, 4), 1.5))
    with pytest.raises(ValueError, match="lengths"):
        cif(torch.randn(2, 4, 3), torch.rand(2, 4), torch.tensor([5, 1]))
    nan_alpha = torch.rand(2, 4)
    nan_alpha[1, 2] = float("nan")  # (it used to give a length of -2**63)
    with pytest.raises(ValueError, match=r"\[0, 1\].*nan"):
        cif(torch.randn(2, 4, 3), nan_alpha)
    nan_alpha[1, 2:] = 0.0
    nan_alpha[0, 3] = float("nan")  # in the padding: ignored
    assert cif(torch.randn(2, 4, 3), nan_alpha, torch.tensor([3, 2])).lengths.tolist() == [
        int(nan_alpha[0, :3].sum() + FIRE_EPS), int(nan_alpha[1, :2].sum() + FIRE_EPS)]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        modify_alpha(torch.rand(1, 4), 2.0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        modify_alpha(torch.rand(1, 4), -0.1)


# --------------------------------------------------------------------------- properties (hypothesis)

utterance_lengths = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(lengths=utterance_lengths, lam=st.floats(0.0, 1.999), seed=st.integers(0, 2**31 - 1))
def test_batch_equals_one_by_one(lengths, lam, seed):
    x, alpha, lens = random_batch(seed, lengths)
    batched = cif(x, modify_alpha(alpha, lam, lens), lens)
    for b, n in enumerate(lengths):
        single = cif(x[b : b + 1, :n], modify_alpha(alpha[b : b + 1, :n], lam))
        k = int(single.lengths[0])
        assert int(batched.lengths[b]) == k
        torch.testing.assert_close(batched.out[b, :k], single.out[0], rtol=1e-6, atol=1e-6)
        # centres in 20 ms frame units: float64 sums in another order differ in the last digits (1.5e-7 seen)
        torch.testing.assert_close(batched.centers[b, :k], single.centers[0], rtol=1e-6, atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(lengths=utterance_lengths, lam=st.floats(0.0, 1.999), seed=st.integers(0, 2**31 - 1))
def test_counts_weights_and_centres(lengths, lam, seed):
    _, alpha, lens = random_batch(seed, lengths)
    alpha_mod = modify_alpha(alpha, lam, lens)
    ones = torch.ones(len(lengths), max(lengths), 1, dtype=torch.float64)
    res = cif(ones, alpha_mod.double(), lens)
    for b, n in enumerate(lengths):
        total = float(alpha_mod[b, :n].double().sum())
        assert int(res.lengths[b]) == math.floor(total + FIRE_EPS)
        if n > 0:
            assert int(res.lengths[b]) >= 1, "the guard keeps at least one frame"
        k = int(res.lengths[b])
        torch.testing.assert_close(res.out[b, :k, 0], torch.ones(k, dtype=torch.float64), rtol=0, atol=2 * FIRE_EPS)
        c = res.centers[b, :k]
        assert torch.all(c[1:] > c[:-1]), "centres increase"
        assert torch.all((c >= 0) & (c <= max(n - 1, 0)))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 2**31 - 1), lam=st.floats(0.0, 1.999))
def test_modify_alpha_is_the_paper_formula(n, seed, lam):
    alpha = torch.rand(1, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = modify_alpha(alpha, lam)[0]
    want = modify_alpha_formula(alpha[0], lam)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert float(got.max()) <= 1.0 + 1e-12 and float(got.min()) >= 0.0
    assert float(got.sum()) >= 1.0 - 1e-9


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 2**31 - 1),
       lams=st.lists(st.floats(0.0, 1.999), min_size=2, max_size=6))
def test_frame_count_is_monotone_in_lambda(n, seed, lams):
    alpha = torch.rand(1, n, generator=torch.Generator().manual_seed(seed))
    x = torch.randn(1, n, 2)
    counts = [int(cif(x, modify_alpha(alpha, lam)).lengths[0]) for lam in sorted(lams)]
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_modify_alpha_special_values_and_padding():
    alpha = torch.rand(2, 30, dtype=torch.float64) * 0.5 + 0.25
    lens = torch.tensor([30, 10])
    assert torch.equal(modify_alpha(alpha, 0.0, lens)[0], torch.ones(30, dtype=torch.float64))
    at_one = modify_alpha(alpha, 1.0, lens)
    torch.testing.assert_close(at_one[0], alpha[0])  # sum >= 1: guard inactive, eq. 1 == eq. 2 == alpha
    assert torch.all(at_one[1, 10:] == 0)
    near_two = modify_alpha(alpha, 2 - 1e-5, lens)
    torch.testing.assert_close(near_two[0].sum(), torch.tensor(1.0, dtype=torch.float64))  # one frame
    # continuity at lam = 1 from both sides
    torch.testing.assert_close(modify_alpha(alpha, 1 - 1e-9, lens), modify_alpha(alpha, 1.0, lens), atol=1e-8, rtol=0)


@pytest.mark.parametrize("lam0", [0.3, 0.8, 1.2, 1.5, 1.97])
def test_modify_alpha_gradcheck(lam0):
    torch.manual_seed(0)
    alpha = (torch.rand(2, 9, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    lam = torch.tensor(lam0, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor([9, 6])
    assert torch.autograd.gradcheck(lambda a, l: modify_alpha(a, l, lens), (alpha, lam))


def test_lambda_gradient_flows_through_cif():
    """Adaptive lambda: d(out)/d(lam) is non-zero and matches finite differences."""
    torch.manual_seed(0)
    x = torch.randn(1, 40, 3, dtype=torch.float64)
    alpha = torch.rand(1, 40, dtype=torch.float64)
    proj = torch.randn(1, 40, 3, dtype=torch.float64)

    def loss(lam):
        res = cif(x, modify_alpha(alpha, lam))
        return (res.out * proj[:, : res.out.shape[1]]).sum()

    for lam0 in (0.4, 1.3):
        lam = torch.tensor(lam0, dtype=torch.float64, requires_grad=True)
        loss(lam).backward()
        h = 1e-7  # small enough that no firing decision flips
        fd = (loss(torch.tensor(lam0 + h, dtype=torch.float64)) - loss(torch.tensor(lam0 - h, dtype=torch.float64))) / (2 * h)
        assert lam.grad != 0
        torch.testing.assert_close(lam.grad, fd, rtol=1e-4, atol=1e-6)


def test_per_utterance_lambda_equals_one_by_one():
    x, alpha, lens = random_batch(11, [30, 22, 9])
    lams = torch.tensor([0.2, 1.0, 1.7])
    batched = modify_alpha(alpha, lams, lens)
    for b, n in enumerate([30, 22, 9]):
        single = modify_alpha(alpha[b : b + 1, :n], float(lams[b]))
        torch.testing.assert_close(batched[b, :n], single[0])
        assert torch.all(batched[b, n:] == 0)
    with pytest.raises(ValueError, match="batch"):
        modify_alpha(alpha, torch.tensor([0.1, 0.2]), lens)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 1.5])
def test_forward_without_a_gradient_is_the_same_bit_for_bit(lam):
    """Without a gradient to carry, cif() leaves out entries of weight 0 (a fire exactly on an integer, alpha 0):
    the outputs are those of the forward that keeps them for the backward, bit for bit."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 60, 8, generator=g)
    alpha = torch.rand(4, 60, generator=g)
    alpha[1] = 0.5  # every other frame fires exactly on an integer, remainder 0
    alpha[2, ::3] = 0.0  # frames of weight 0
    lens = torch.tensor([60, 60, 41, 0])
    alpha_mod = modify_alpha(alpha, lam, lens)
    plain = cif(x, alpha_mod, lens)
    with_grad = cif(x.clone().requires_grad_(), alpha_mod, lens)
    with torch.no_grad():
        under_no_grad = cif(x.clone().requires_grad_(), alpha_mod.clone().requires_grad_(), lens)
    assert with_grad.out.requires_grad and not plain.out.requires_grad and not under_no_grad.out.requires_grad
    for other in (with_grad, under_no_grad):
        assert torch.equal(plain.out, other.out.detach())
        assert torch.equal(plain.lengths, other.lengths) and torch.equal(plain.centers, other.centers)


def test_the_weight_gradient_without_the_fused_kernel_is_the_same(monkeypatch):
    """Where a torch build lacks aten::_embedding_bag_per_sample_weights_backward, the plain gather takes over."""
    import ofactl.cif as C

    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 40, 6, dtype=torch.float64, generator=g, requires_grad=True)
    alpha = (0.2 + 0.7 * torch.rand(3, 40, dtype=torch.float64, generator=g)).requires_grad_()
    lens = torch.tensor([40, 25, 7])
    grads = []
    for kernel in (C._PER_SAMPLE_WEIGHTS_BACKWARD, None):
        monkeypatch.setattr(C, "_PER_SAMPLE_WEIGHTS_BACKWARD", kernel)
        out = cif(x, alpha, lens).out
        grads.append(torch.autograd.grad((out * torch.arange(out.numel()).view_as(out)).sum(), (x, alpha)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda xx, aa: cif(xx, aa, lens).out, (x, alpha), atol=1e-7)
