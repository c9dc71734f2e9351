"""Length-aware building blocks shared by the student and the teacher.

Both models use the wav2vec2/HuBERT layout (a strided CNN over samples, a
feature projection, a convolutional positional embedding and a stack of
transformer layers).  The transformer pieces are torchaudio's own modules, so a
checkpoint in torchaudio's naming loads as is; what is ours is the handling of
padding:

* torchaudio's CNN normalises its first layer with ``GroupNorm`` over the whole
  padded time axis, so a padded batch gives different features than the same
  utterances one at a time.  :class:`ConvFeatureExtractor` takes the statistics
  over each utterance's valid frames only (same parameters, same state-dict
  keys, identical output for an unpadded input).
* :func:`run_encoder` zeroes padded frames before the positional convolution
  and after every layer, masks padded keys in attention, and returns every
  layer's hidden states.

Every layer that changes the time axis takes ``(x, lengths)`` and returns
``(y, lengths)``; lengths are computed from the layer arithmetic, never from a
nominal rate.
"""

from __future__ import annotations

import contextlib

from typing import Sequence

import torch
from torch import Tensor, nn

from ofactl.channels_last import PositionalConv, conv1d_module

ConvSpec = Sequence[tuple[int, int, int]]
"""CNN layers as ``(out_channels, kernel_size, stride)``."""

#: The wav2vec2 / HuBERT CNN: 320 samples (20 ms at 16 kHz) per output frame.
WAV2VEC2_CONV: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


_ATTENTION_MASK_VALUE = -10_000.0  # additive; exp() underflows to exactly 0 in fp32


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean mask ``(batch, max_len)``, True where ``index < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def conv_output_lengths(lengths: Tensor, conv_layers: ConvSpec) -> Tensor:
    """Number of valid CNN frames for ``lengths`` samples.

    Applies ``floor((L - kernel) / stride) + 1`` per layer, clamped at 0, exactly
    as the convolutions do (no padding).  ``lengths`` has shape ``(batch,)``.
    """
    for _, kernel, stride in conv_layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        lengths = lengths.clamp(min=0)
    return lengths


def _bf16_inference(x: Tensor) -> bool:
    """A bf16 tensor outside autograd (extraction under bf16 autocast): the CNN may stay in bf16 end to end."""
    return x.dtype == torch.bfloat16 and not (torch.is_grad_enabled() and x.requires_grad)


class MaskedGroupNorm(nn.GroupNorm):
    """``GroupNorm(C, C)`` (per-channel normalisation over time) that ignores padding.

    Same parameters and state-dict keys as :class:`torch.nn.GroupNorm`; with
    ``lengths=None`` it is plain GroupNorm.
    """

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                stats: tuple[Tensor, Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """``x``: ``(batch, channel, frame)``; ``lengths``: ``(batch,)`` or None.

        ``stats = (mean, var)``, each ``(batch, channel)``, replaces the statistics
        of ``x`` (chunked extraction of long audio passes the whole file's).
        """
        if lengths is None and stats is None:
            return super().forward(x)
        if self.num_groups != self.num_channels:
            raise ValueError(
                f"MaskedGroupNorm supports num_groups == num_channels only; found {self.num_groups} groups "
                f"for {self.num_channels} channels"
            )
        if stats is None:
            return self._per_utterance(x, lengths)
        mean, var = stats
        # y = x * scale + shift in one pass; scale and shift per (utterance, channel), computed in float32
        scale = torch.rsqrt(var.float() + self.eps)
        if self.affine:
            scale = scale * self.weight.float()
            shift = self.bias.float() - mean.float() * scale
        else:
            shift = -mean.float() * scale
        if _bf16_inference(x):
            # bf16 inference stays in bf16: no float32 copy of the CNN's widest tensor and no cast before the next
            # convolution; scale and shift rounded to bf16 move outputs by at most 0.4%, as that convolution's own
            # rounding of its input does (frame counts do not depend on it: the alpha module runs in float32)
            return torch.addcmul(shift.to(x.dtype)[..., None], x, scale.to(x.dtype)[..., None])
        return torch.addcmul(shift[..., None], x, scale[..., None])  # float32, as autocast's GroupNorm

    def _per_utterance(self, x: Tensor, lengths: Tensor) -> Tensor:
        """torch's own GroupNorm on each utterance's valid frames (a prefix), so the padding never enters the
        statistics; padded frames come out zero.  In float32 (as autocast's GroupNorm), except at bf16 inference,
        which stays in bf16: torch's bf16 GroupNorm accumulates in float32, and is many times faster than a
        float32 copy of the CNN's widest tensor (frame counts do not depend on it: alpha runs in float32)."""
        keep = _bf16_inference(x)
        dtype = x.dtype if keep else torch.promote_types(x.dtype, torch.float32)
        weight = self.weight.to(dtype) if self.affine else None
        bias = self.bias.to(dtype) if self.affine else None
        # the output in x's memory layout (channels-last from the CPU convolutions), each utterance a 4-D view:
        # GroupNorm has a channels-last kernel, so nothing is transposed
        out = torch.zeros_like(x, dtype=dtype)
        autocast_off = keep and x.device.type in ("cpu", "cuda")
        with torch.autocast(x.device.type, enabled=False) if autocast_off else contextlib.nullcontext():
            for b, n in enumerate(lengths.tolist()):
                if n > 0:
                    part = x[b : b + 1, :, None, :n].to(dtype)
                    out[b, :, :n] = nn.functional.group_norm(part, self.num_groups, weight, bias, self.eps)[0, :, 0]
        return out


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a ``(batch, channel, frame)`` tensor (wav2vec2 'layer_norm' mode)."""

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x.transpose(-2, -1)).transpose(-2, -1)


class ConvBlock(nn.Module):
    """Conv1d -> optional norm -> GELU, with lengths."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool,
                 norm: nn.Module | None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, bias=bias)
        self.layer_norm = norm  # attribute name matches torchaudio's state-dict keys

    def forward(self, x: Tensor, lengths: Tensor | None,
                stats: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """``x``: ``(batch, channel, samples_or_frames)`` -> ``(batch, out_channel, frame)``.

        ``stats`` replaces a GroupNorm's own statistics (see :class:`MaskedGroupNorm`).
        """
        x = conv1d_module(self.conv, x)  # channels-last on the CPU (ofactl.channels_last)
        if lengths is not None:
            lengths = (torch.div(lengths - self.kernel_size, self.stride, rounding_mode="floor") + 1).clamp(min=0)
        if isinstance(self.layer_norm, MaskedGroupNorm):
            x = self.layer_norm(x, lengths, stats)
        elif self.layer_norm is not None:
            x = self.layer_norm(x, lengths)
        return nn.functional.gelu(x), lengths


class ConvFeatureExtractor(nn.Module):
    """The wav2vec2/HuBERT CNN over 16 kHz samples, padding-exact.

    Args:
        conv_layers: ``(out_channels, kernel_size, stride)`` per layer.
        norm_mode: ``"group_norm"`` (HuBERT Base, DistilHuBERT: first layer
            only) or ``"layer_norm"`` (every layer, wav2vec2 Large style).
        bias: whether the convolutions have a bias.

    State-dict keys equal torchaudio's ``feature_extractor`` keys.
    """

    def __init__(self, conv_layers: ConvSpec = WAV2VEC2_CONV, norm_mode: str = "group_norm", bias: bool = False):
        super().__init__()
        if norm_mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"norm_mode must be 'group_norm' or 'layer_norm', found {norm_mode!r}")
        self.conv_spec = tuple(tuple(int(v) for v in layer) for layer in conv_layers)
        blocks = []
        in_channels = 1
        for i, (out_channels, kernel, stride) in enumerate(self.conv_spec):
            norm: nn.Module | None = None
            if norm_mode == "group_norm" and i == 0:
                norm = MaskedGroupNorm(out_channels, out_channels, affine=True)
            elif norm_mode == "layer_norm":
                norm = ChannelLayerNorm(out_channels, elementwise_affine=True)
            blocks.append(ConvBlock(in_channels, out_channels, kernel, stride, bias, norm))
            in_channels = out_channels
        self.conv_layers = nn.ModuleList(blocks)

    @property
    def out_dim(self) -> int:
        return self.conv_spec[-1][0]

    @property
    def receptive_field_samples(self) -> int:
        """Samples seen by one output frame (400 for the wav2vec2 CNN)."""
        field = 1
        for _, kernel, stride in reversed(self.conv_spec):
            field = (field - 1) * stride + kernel
        return field

    @property
    def hop_samples(self) -> int:
        """Samples between consecutive output frames (320 = 20 ms for the wav2vec2 CNN)."""
        hop = 1
        for _, _, stride in self.conv_spec:
            hop *= stride
        return hop

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames produced from ``lengths`` samples, shape ``(batch,)``."""
        return conv_output_lengths(lengths, self.conv_spec)

    def forward(self, audio: Tensor, lengths: Tensor | None = None,
                first_stats: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Args:
            audio: ``(batch, samples)`` float waveform at 16 kHz.
            lengths: ``(batch,)`` valid samples, or None when unpadded.
            first_stats: ``(mean, var)`` for the first layer's GroupNorm, each
                ``(batch, channel)`` (a long file's whole-file statistics when it
                is processed in chunks); None computes them from ``audio``.

        Returns:
            ``(features, frame_lengths)``: ``(batch, frame, channel)`` with padded
            frames set to zero, and ``(batch,)`` valid frames.
        """
        if audio.ndim != 2:
            raise ValueError(f"expected audio of shape (batch, samples), found {tuple(audio.shape)}")
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
        else:
            audio = audio.masked_fill(~valid_mask(lengths, audio.shape[1]), 0.0)
        short = self.receptive_field_samples - audio.shape[1]
        if short > 0:  # shorter than one frame: pad so the convolutions run; lengths give 0 frames
            audio = nn.functional.pad(audio, (0, short))
        x = audio.unsqueeze(1)
        frame_lengths = lengths
        for i, block in enumerate(self.conv_layers):
            x, frame_lengths = block(x, frame_lengths, first_stats if i == 0 else None)
        x = x.transpose(1, 2)
        x = x.masked_fill(~valid_mask(frame_lengths, x.shape[1])[..., None], 0.0)
        return x, frame_lengths


def build_encoder(
    in_dim: int,
    embed_dim: int,
    num_layers: int,
    num_heads: int,
    ffn_dim: int,
    pos_conv_kernel: int,
    pos_conv_groups: int,
    dropout: float = 0.1,
    attention_dropout: float = 0.1,
    activation_dropout: float = 0.0,
    input_dropout: float = 0.0,
    layer_norm_first: bool = False,
    layer_drop: float = 0.0,
    projection_layer_norm: bool = True,
) -> nn.Module:
    """torchaudio's wav2vec2 ``Encoder`` (feature projection, positional conv, transformer).

    ``layer_norm_first`` follows fairseq's meaning (False: post-LN, HuBERT Base).
    ``projection_layer_norm=False`` drops the LayerNorm before the projection (DistilHuBERT has none).
    The returned module's state-dict keys are torchaudio's ``encoder.*`` keys.
    """
    from torchaudio.models import wav2vec2_model

    model = wav2vec2_model(
        extractor_mode="group_norm",
        extractor_conv_layer_config=[(8, 10, 5)],  # discarded: we only keep the encoder
        extractor_conv_bias=False,
        encoder_embed_dim=embed_dim,
        encoder_projection_dropout=input_dropout,
        encoder_pos_conv_kernel=pos_conv_kernel,
        encoder_pos_conv_groups=pos_conv_groups,
        encoder_num_layers=num_layers,
        encoder_num_heads=num_heads,
        encoder_attention_dropout=attention_dropout,
        encoder_ff_interm_features=ffn_dim,
        encoder_ff_interm_dropout=activation_dropout,
        encoder_dropout=dropout,
        encoder_layer_norm_first=layer_norm_first,
        encoder_layer_drop=layer_drop,
        aux_num_out=None,
    )
    encoder = model.encoder
    if encoder.feature_projection.layer_norm.normalized_shape[0] != in_dim:
        encoder.feature_projection.layer_norm = nn.LayerNorm(in_dim)
        encoder.feature_projection.projection = nn.Linear(in_dim, embed_dim)
    if not projection_layer_norm:
        encoder.feature_projection.layer_norm = nn.Identity()
    encoder.transformer.pos_conv_embed = PositionalConv(encoder.transformer.pos_conv_embed)  # same keys, faster
    return encoder


def run_encoder(encoder: nn.Module, features: Tensor, lengths: Tensor, num_layers: int | None = None) -> list[Tensor]:
    """Run a torchaudio wav2vec2 ``Encoder`` and return every layer's hidden states.

    Args:
        encoder: from :func:`build_encoder` or a torchaudio ``Wav2Vec2Model.encoder``.
        features: ``(batch, frame, in_dim)`` CNN (or CIF-pooled) features.
        lengths: ``(batch,)`` valid frames.
        num_layers: run only the first ``num_layers`` transformer layers.

    Returns:
        ``[h_0, h_1, ..., h_L]``, each ``(batch, frame, embed_dim)``: ``h_0`` is the
        transformer input (after projection and positional convolution), ``h_i``
        the output of layer ``i``.  Padded frames are zero.  For pre-LN models the
        final layer norm is applied to the last layer's output (as Hugging Face
        does) when the whole stack runs.
    """
    transformer = encoder.transformer
    layers = transformer.layers
    n_run = len(layers) if num_layers is None else num_layers
    if not 0 <= n_run <= len(layers):
        raise ValueError(f"num_layers must be in [0, {len(layers)}], found {num_layers}")
    batch, max_len, _ = features.shape
    if max_len == 0:  # nothing to attend to (e.g. every utterance compressed to zero frames)
        empty = features.new_zeros(batch, 0, encoder.feature_projection.projection.out_features)
        return [empty] * (n_run + 1)
    valid = valid_mask(lengths, max_len)[..., None]  # (B, T, 1)

    x = encoder.feature_projection(features)
    x = x.masked_fill(~valid, 0.0)
    x = x + transformer.pos_conv_embed(x)
    # torchaudio stores the *inverse* of fairseq's flag here: True means post-LN.
    post_ln = transformer.layer_norm_first
    if post_ln:
        x = transformer.layer_norm(x)
    x = transformer.dropout(x)
    x = x.masked_fill(~valid, 0.0)
    hidden = [x]

    key_pad = ~valid[..., 0]  # (B, T) True on padding
    attn_mask = (key_pad.to(x.dtype) * _ATTENTION_MASK_VALUE)[:, None, None, :].expand(batch, 1, max_len, max_len)
    for i in range(n_run):
        layer = layers[i]
        if transformer.training and transformer.layer_drop > 0 and torch.rand(()) < transformer.layer_drop:
            hidden.append(x)
            continue
        x, _ = layer(x, attn_mask.to(x.dtype))
        if not post_ln and i == len(layers) - 1:
            x = transformer.layer_norm(x)
        x = x.masked_fill(~valid, 0.0)
        hidden.append(x)
    return hidden
