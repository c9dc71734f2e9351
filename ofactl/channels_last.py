"""1-D convolutions computed channels-last on the CPU, the layout oneDNN is fastest in.

The CNN and the positional convolution are ``Conv1d`` modules (their weights
and state-dict keys stay torchaudio's), but how they are computed is ours:

* a convolution over one input channel (the CNN's first layer, over samples)
  is a matrix product of the strided windows of the waveform (``unfold``, a
  view) with the kernel;
* every other one, where channels-last is the faster layout (always at
  inference and in bf16; see :func:`prefers_channels_last`), is a ``conv2d``
  over a ``(batch, channel, 1, frame)`` view in ``torch.channels_last``, whose
  memory is ``(batch, frame, channel)``.

Results keep the ``(batch, channel, frame)`` shape of ``conv1d``; channels-last
ones have ``(batch, frame, channel)`` memory, so that one layer's output is the next one's
input without a copy, and the transformer's ``(batch, frame, channel)`` is a
transpose away.  Measured side by side on a 2-core AVX512-BF16 CPU, batch
8 x 10 s: the first layer 1.6x faster in float32 and 2.3x in bf16, the widest
512-channel layer 1.04x and 1.3x, the positional convolution (768 channels in
16 groups, kernel 128) 1.4x and 2.2x.  Values equal ``conv1d``'s up to the
order of the sums (float32: about 1e-6 relative).  On other devices
``conv1d`` itself runs (its fast layout is the device's business).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, padding: int = 0,
           groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv1d(x, weight, bias, stride, padding, groups=groups)``, channels-last on the CPU
    where that is the faster layout (:func:`prefers_channels_last`).

    ``x``: ``(batch, in_channel, frame)`` with any strides.  Returns ``(batch,
    out_channel, frame_out)``, with ``(batch, frame_out, out_channel)`` memory
    where channels-last was used.
    """
    if x.device.type != "cpu" or not prefers_channels_last(x, weight, groups):
        return nn.functional.conv1d(x, weight, bias, stride, padding, 1, groups)
    out_channels, _, kernel = weight.shape
    if x.shape[1] == 1 and groups == 1 and padding == 0 and x.shape[2] >= kernel:
        windows = x[:, 0].unfold(1, kernel, stride)  # (batch, frame_out, kernel), a view
        out = torch.matmul(windows, weight.reshape(out_channels, kernel).t())
        if bias is not None:
            out = out + bias.to(out.dtype)  # (under autocast the product is bf16, the bias not)
        return out.transpose(1, 2)
    x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # a view when x is already channels-last
    w4 = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return nn.functional.conv2d(x4, w4, bias, (1, stride), (0, padding), 1, groups).squeeze(2)


def prefers_channels_last(x: Tensor, weight: Tensor, groups: int = 1) -> bool:
    """Whether channels-last is the faster layout for this convolution on the CPU.

    Yes for a grouped convolution, without autograd, and in bf16 (a bf16
    tensor or CPU autocast to bf16).  Not for an ungrouped one in float32
    under autograd: there oneDNN's channels-last backward is the slower one
    (0.8x at the CNN's two widest layers in a training step), so a float32
    training step computes the CNN exactly as ``conv1d`` does.
    """
    if groups > 1 or not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return True
    return x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def conv1d_module(module: nn.Conv1d, x: Tensor) -> Tensor:
    """``module(x)`` through :func:`conv1d` (zero padding only; ``module.weight`` is read once, so a weight-norm
    parametrisation is computed once).  A module with forward pre-hooks runs itself: the legacy
    ``torch.nn.utils.weight_norm`` computes ``weight`` in one, so reading it directly could be stale."""
    if (module.padding_mode != "zeros" or module.dilation != (1,) or isinstance(module.padding, str)
            or module._forward_pre_hooks):
        return module(x)
    return conv1d(x, module.weight, module.bias, module.stride[0], module.padding[0], module.groups)


class PositionalConv(nn.Module):
    """torchaudio's ``ConvolutionalPositionalEmbedding`` with its convolution through :func:`conv1d`.

    Takes over the original's ``conv`` submodule (weight norm included), so
    the parameters and state-dict keys are the same.  ``(batch, frame,
    feature)`` -> the same shape: the grouped convolution (the last frame
    dropped for an even kernel), then GELU.
    """

    def __init__(self, original: nn.Module):
        super().__init__()
        self.embed_dim = original.embed_dim
        self.kernel_size = original.kernel_size
        self.num_remove = original.num_remove
        self.conv = original.conv

    def forward(self, x: Tensor) -> Tensor:
        y = conv1d_module(self.conv, x.transpose(1, 2))
        if self.num_remove > 0:
            y = y[..., : -self.num_remove]
        return nn.functional.gelu(y).transpose(1, 2)
