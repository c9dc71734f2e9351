"""ofactl.channels_last against torch's own conv1d and torchaudio's positional convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ofactl.channels_last import PositionalConv, conv1d, conv1d_module, prefers_channels_last

# (batch, in_channels, frames, out_channels, kernel, stride, padding, groups, bias)
CASES = [
    (3, 1, 400, 16, 10, 5, 0, 1, False),  # the CNN's first layer: a product of unfolded windows
    (3, 1, 400, 16, 10, 5, 0, 1, True),
    (2, 1, 10, 8, 10, 5, 0, 1, False),  # exactly one window
    (3, 16, 79, 16, 3, 2, 0, 1, False),  # a CNN layer
    (2, 16, 40, 12, 2, 2, 0, 1, True),
    (2, 32, 50, 32, 16, 1, 8, 4, True),  # the positional convolution: grouped, padded, even kernel
    (0, 16, 30, 16, 3, 2, 0, 1, False),  # an empty batch
]


def _case(batch, cin, frames, cout, kernel, stride, padding, groups, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, frames, generator=g, dtype=torch.float64)
    w = torch.randn(cout, cin // groups, kernel, generator=g, dtype=torch.float64) / kernel
    b = torch.randn(cout, generator=g, dtype=torch.float64) if bias else None
    return x, w, b


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("layout", ["contiguous", "channels-last"])
def test_equals_conv1d_values_and_gradients(case, layout):
    *shape, stride, padding, groups, bias = case
    x, w, b = _case(*shape, stride, padding, groups, bias)
    if layout == "channels-last":  # as a previous channels-last layer hands it over
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    ref = nn.functional.conv1d(x, w, b, stride, padding, 1, groups)
    with torch.no_grad():
        got = conv1d(x, w, b, stride, padding, groups)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    if x.shape[0]:
        assert got.transpose(1, 2).is_contiguous()  # (batch, frame, channel) memory at inference
    # under autograd (float64 here: conv1d itself for ungrouped convolutions, channels-last for grouped ones)
    xg, wg = x.clone().requires_grad_(x.shape[1] > 1), w.clone().requires_grad_()
    out = conv1d(xg, wg, b, stride, padding, groups)
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * weights).sum(), [t for t in (xg, wg) if t.requires_grad])
    xr, wr = x.clone().requires_grad_(x.shape[1] > 1), w.clone().requires_grad_()
    out_ref = nn.functional.conv1d(xr, wr, b, stride, padding, 1, groups)
    grads_ref = torch.autograd.grad((out_ref * weights).sum(), [t for t in (xr, wr) if t.requires_grad])
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5]])
def test_bf16_and_autocast_stay_close_to_float32(case):
    *shape, stride, padding, groups, bias = case
    x, w, b = (t.float() if t is not None else None for t in _case(*shape, stride, padding, groups, bias))
    ref = nn.functional.conv1d(x, w, b, stride, padding, 1, groups)
    with torch.no_grad():
        as_bf16 = conv1d(x.bfloat16(), w.bfloat16(), None if b is None else b.bfloat16(), stride, padding, groups)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = conv1d(x, w, b, stride, padding, groups)
    for got in (as_bf16, autocast):
        assert got.dtype == torch.bfloat16 and got.shape == ref.shape
        cos = nn.functional.cosine_similarity(got.float().flatten(1), ref.flatten(1), dim=1)
        assert float(cos.min()) > 0.999


def test_which_layout_where():
    x, w = torch.randn(2, 8, 20), torch.randn(8, 8, 3)
    assert prefers_channels_last(x, w)  # no autograd: inference
    assert not prefers_channels_last(x, w.requires_grad_())  # float32 training: oneDNN's backward is faster NCW
    assert prefers_channels_last(x, w, groups=2)  # grouped: channels-last both ways
    assert prefers_channels_last(x.bfloat16(), w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert prefers_channels_last(x, w)
    with torch.no_grad():
        assert prefers_channels_last(x, w)


def test_positional_conv_is_torchaudio_s_with_the_same_keys():
    from torchaudio.models.wav2vec2.components import ConvolutionalPositionalEmbedding

    torch.manual_seed(0)
    for kernel in (16, 15):  # even: the last frame dropped
        original = ConvolutionalPositionalEmbedding(32, kernel, 4)
        x = torch.randn(3, 41, 32)
        with torch.no_grad():
            ref = original(x)
            ours = PositionalConv(original)
            got = ours(x)
        assert set(ours.state_dict()) == set(original.state_dict())
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        assert got.is_contiguous()  # (batch, frame, feature) memory, no copy back


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_a_module_with_a_pre_hook_runs_itself():
    """The legacy torch.nn.utils.weight_norm computes ``weight`` in a forward pre-hook: reading it could be stale."""
    torch.manual_seed(0)
    legacy = nn.utils.weight_norm(nn.Conv1d(8, 8, 5, padding=2, groups=2), dim=2)
    x = torch.randn(2, 8, 30)
    with torch.no_grad():
        legacy.weight_g.mul_(3.0)  # changes the weight; only the pre-hook recomputes it
        torch.testing.assert_close(conv1d_module(legacy, x), legacy(x))


@pytest.mark.parametrize("norm_mode", ["group_norm", "layer_norm"])
@pytest.mark.parametrize("grad", [False, True])
def test_the_cnn_equals_torchaudio_s(norm_mode, grad):
    """Our CNN (channels-last at inference, conv1d in a float32 training step) against torchaudio's on an
    unpadded batch, with the same weights."""
    from torchaudio.models.wav2vec2.components import _get_feature_extractor

    from ofactl.layers import ConvFeatureExtractor

    torch.manual_seed(0)
    spec = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2
    ours = ConvFeatureExtractor(spec, norm_mode)
    ref = _get_feature_extractor(norm_mode, [list(s) for s in spec], False)
    ref.load_state_dict(ours.state_dict())
    audio = torch.randn(3, 8000)
    with torch.set_grad_enabled(grad):
        got, frames = ours(audio)
        want, _ = ref(audio, None)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert frames.tolist() == [want.shape[1]] * 3
    if grad:  # the CNN's weights get the same gradients too
        names = [name for name, _ in ours.named_parameters()]
        g_ours = torch.autograd.grad(got.square().sum(), [dict(ours.named_parameters())[n] for n in names])
        g_ref = torch.autograd.grad(want.square().sum(), [dict(ref.named_parameters())[n] for n in names])
        for name, a, b in zip(names, g_ours, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)
