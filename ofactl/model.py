"""The OFA student: DistilHuBERT with a CIF between the CNN and the transformer.

::

    audio (batch, samples) at 16 kHz
      -> CNN feature extractor            x (batch, frame, conv_dim), 20 ms frames
      -> alpha module                     alpha (batch, frame) in (0, 1)
      -> modify_alpha(alpha, lam)         alpha_mod
      -> cif(x, alpha_mod)                (batch, N, conv_dim), N = floor(sum alpha_mod)
      -> projection, positional conv, transformer layers
      -> prediction heads (training)      one per distilled teacher layer

One model serves every frame period: ``lam = 0`` keeps every 20 ms frame,
``lam -> 2`` keeps one frame per utterance.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ofactl.cif import AlphaModule, cif, modify_alpha
from ofactl.errors import OfactlError
from ofactl.layers import WAV2VEC2_CONV, ConvFeatureExtractor, build_encoder, run_encoder, valid_mask

PRESETS = ("distilhubert", "tiny")


@dataclass
class StudentConfig:
    """Sizes of the student.  Plain data: ``dataclasses.asdict`` gives the dict stored in checkpoints.

    Defaults are the paper's DistilHuBERT+CIF (preset ``distilhubert``): DistilHuBERT exactly as s3prl builds
    it (no LayerNorm between the CNN and the projection, no dropout after the projection, the CNN's gradient
    scaled by 0.1 in pretraining) plus the alpha module.  Configs saved by ofactl 0.1 have no
    ``projection_layer_norm`` key: :meth:`from_dict` reads them with 0.1's architecture (that LayerNorm, a 0.1
    dropout after the projection), so they load and give the same outputs.
    """

    conv_layers: tuple[tuple[int, int, int], ...] = WAV2VEC2_CONV
    conv_norm_mode: str = "group_norm"
    conv_bias: bool = False
    alpha_kernel: int = 5
    embed_dim: int = 768
    num_layers: int = 2
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    input_dropout: float = 0.0  # after the projection (0.1 in ofactl 0.1; DistilHuBERT has none)
    layer_drop: float = 0.0
    #: a LayerNorm on the CNN features before the projection (HuBERT has one, DistilHuBERT not; ofactl 0.1 had it)
    projection_layer_norm: bool = False
    target_layers: tuple[int, ...] = (4, 8, 12)
    target_dim: int = 768
    head_inner_dim: int = 768
    #: scales the CNN's gradient in training (fairseq/s3prl ``feature_grad_mult``); 0 freezes the CNN (no backward
    #: through it, the cheapest choice when it was copied from the teacher); 1 trains it like the rest
    feature_grad_mult: float = 0.1

    def __post_init__(self) -> None:
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)  # type: ignore[assignment]
        self.target_layers = tuple(int(v) for v in self.target_layers)
        problems = []
        if not self.conv_layers or any(len(layer) != 3 or min(layer) < 1 for layer in self.conv_layers):
            problems.append(f"conv_layers must be (channels, kernel, stride) triples of positive ints, found {self.conv_layers}")
        if self.conv_norm_mode not in ("group_norm", "layer_norm"):
            problems.append(f"conv_norm_mode must be 'group_norm' or 'layer_norm', found {self.conv_norm_mode!r}")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % self.pos_conv_groups:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        if self.num_layers < 1:
            problems.append(f"num_layers must be >= 1, found {self.num_layers}")
        if self.alpha_kernel < 1 or self.alpha_kernel % 2 == 0:
            problems.append(f"alpha_kernel must be a positive odd number, found {self.alpha_kernel}")
        if not self.target_layers or min(self.target_layers) < 1:
            problems.append(f"target_layers must be teacher layer numbers >= 1, found {self.target_layers}")
        if not 0.0 <= self.feature_grad_mult <= 1.0:
            problems.append(f"feature_grad_mult must lie in [0, 1], found {self.feature_grad_mult}")
        if problems:
            raise OfactlError("invalid student config: " + "; ".join(problems))

    @classmethod
    def preset(cls, name: str) -> StudentConfig:
        """``"distilhubert"`` (the paper's sizes, ~24M parameters; DistilHuBERT exactly) or ``"tiny"`` (tests, CPU
        demos; with ofactl 0.1's LayerNorm before the projection and dropout after it)."""
        if name == "distilhubert":
            return cls()
        if name == "tiny":
            return cls(
                conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
                embed_dim=64,
                num_layers=2,
                num_heads=4,
                ffn_dim=128,
                pos_conv_kernel=16,
                pos_conv_groups=4,
                target_layers=(2, 4, 6),
                target_dim=64,
                head_inner_dim=64,
                # the demo's and the tests' student keeps ofactl 0.1's architecture (its numbers stay comparable)
                **V01_DEFAULTS,
            )
        raise OfactlError(f"unknown student preset {name!r}", hint=f"choose one of: {', '.join(PRESETS)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """Strict: an unknown key is an error that lists the valid ones."""
        if not isinstance(data, dict):
            raise OfactlError(f"student config must be a mapping, found {type(data).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise OfactlError(f"unknown student config key(s): {', '.join(unknown)}", hint=f"valid keys: {', '.join(valid)}")
        if "projection_layer_norm" not in data:  # saved by ofactl 0.1: its architecture and defaults
            data = {**V01_DEFAULTS, **data}
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples), YAML/JSON friendly."""
        d = dataclasses.asdict(self)
        d["conv_layers"] = [list(layer) for layer in self.conv_layers]
        d["target_layers"] = list(self.target_layers)
        return d


#: What a config saved by ofactl 0.1 (no ``projection_layer_norm`` key) leaves out means 0.1's values.
V01_DEFAULTS: dict[str, Any] = {"projection_layer_norm": True, "input_dropout": 0.1, "feature_grad_mult": 1.0}


class PredictionHeads(nn.Module):
    """DistilHuBERT heads: Linear(D, n*H) -> GELU -> n separate Linear(H, D_target)."""

    def __init__(self, embed_dim: int, inner_dim: int, target_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.inner_dim = inner_dim
        self.shared = nn.Linear(embed_dim, inner_dim * num_heads)
        self.weight = nn.Parameter(torch.empty(num_heads, inner_dim, target_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads, target_dim))
        bound = inner_dim**-0.5  # nn.Linear's default init range
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        """``h``: ``(batch, frame, embed_dim)`` -> ``(batch, head, frame, target_dim)``."""
        z = nn.functional.gelu(self.shared(h))
        z = z.view(*h.shape[:2], self.num_heads, self.inner_dim)
        return torch.einsum("btnh,nhd->bntd", z, self.weight) + self.bias[None, :, None, :]


class StudentOutput(NamedTuple):
    """What :meth:`OFAStudent.forward` returns.

    Attributes:
        hidden_states: ``[h_0, ..., h_L]``, each ``(batch, N, embed_dim)``; ``h_0`` is
            the transformer input, ``h_L`` the last layer.  Zero beyond ``lengths``.
        lengths: ``(batch,)`` output frames N_b.
        alpha: ``(batch, frame)`` the alpha module's weights at 20 ms (zero on padding).
        alpha_mod: ``(batch, frame)`` the weights after ``modify_alpha``.
        frame_lengths: ``(batch,)`` valid CNN frames (20 ms).
        predictions: ``(batch, head, N, target_dim)``, or None when not asked for.
        centers: ``(batch, N)`` each output frame's centre of mass in CNN frame
            indices (float64, no gradient).
        features: ``(batch, frame, conv_dim)`` CNN output at 20 ms.
    """

    hidden_states: list[Tensor]
    lengths: Tensor
    alpha: Tensor
    alpha_mod: Tensor
    frame_lengths: Tensor
    predictions: Tensor | None
    centers: Tensor
    features: Tensor


class OFAStudent(nn.Module):
    """DistilHuBERT + CIF, served at any ``lam`` in ``[0, 2)``.

    Submodule names (``feature_extractor``, ``encoder``) equal torchaudio's
    ``Wav2Vec2Model``, so a teacher's CNN, projection, positional conv and
    first layers copy over by key (see ``ofactl.teacher.init_student_from_teacher``).
    """

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = config or StudentConfig()
        c = self.config
        self.feature_extractor = ConvFeatureExtractor(c.conv_layers, c.conv_norm_mode, c.conv_bias)
        conv_dim = self.feature_extractor.out_dim
        self.alpha_module = AlphaModule(conv_dim, c.alpha_kernel)
        self.encoder = build_encoder(
            in_dim=conv_dim,
            embed_dim=c.embed_dim,
            num_layers=c.num_layers,
            num_heads=c.num_heads,
            ffn_dim=c.ffn_dim,
            pos_conv_kernel=c.pos_conv_kernel,
            pos_conv_groups=c.pos_conv_groups,
            dropout=c.dropout,
            attention_dropout=c.attention_dropout,
            activation_dropout=c.activation_dropout,
            input_dropout=c.input_dropout,
            layer_norm_first=c.layer_norm_first,
            layer_drop=c.layer_drop,
            projection_layer_norm=c.projection_layer_norm,
        )
        self.heads = PredictionHeads(c.embed_dim, c.head_inner_dim, c.target_dim, len(c.target_layers))

    @property
    def hop_samples(self) -> int:
        """Samples between CNN frames (320 = 20 ms)."""
        return self.feature_extractor.hop_samples

    def forward(
        self,
        audio: Tensor,
        audio_lengths: Tensor | None = None,
        lam: float | Tensor = 0.0,
        predict: bool = True,
    ) -> StudentOutput:
        """Args:
            audio: ``(batch, samples)`` float waveform at 16 kHz.
            audio_lengths: ``(batch,)`` valid samples, or None when unpadded.
            lam: lambda in ``[0, 2)``: a float, a 0-d tensor (differentiable), or a
                ``(batch,)`` tensor with one lambda per utterance.
            predict: also run the prediction heads (pretraining).

        Returns:
            :class:`StudentOutput`.
        """
        features, frame_lengths, alpha = self.front(audio, audio_lengths)
        return self.back(features, frame_lengths, alpha, lam, predict)

    def front(self, audio: Tensor, audio_lengths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The 20 ms part: CNN and alpha module.

        Returns ``(features (batch, frame, conv_dim), frame_lengths (batch,), alpha (batch, frame))``.
        Under bf16 autocast the CNN runs in bf16, but the alpha module always runs in float32 (autocast off):
        the firing decisions, hence the frame counts, must not depend on bf16 rounding of its weights.
        """
        mult = self.config.feature_grad_mult
        if self.training and mult == 0.0:
            with torch.no_grad():
                features, frame_lengths = self.feature_extractor(audio, audio_lengths)
        else:
            features, frame_lengths = self.feature_extractor(audio, audio_lengths)
            if self.training and mult != 1.0:
                features = _GradMultiply.apply(features, mult)
        with _full_precision(features.device):
            alpha = self.alpha_module(features.float(), frame_lengths)
        return features, frame_lengths, alpha

    def back(self, features: Tensor, frame_lengths: Tensor, alpha: Tensor, lam: float | Tensor,
             predict: bool = False) -> StudentOutput:
        """The compressed part: ``modify_alpha`` -> CIF -> transformer (-> heads)."""
        alpha_mod = modify_alpha(alpha, lam, frame_lengths)
        pooled = cif(features, alpha_mod, frame_lengths)
        hidden = run_encoder(self.encoder, pooled.out, pooled.lengths)
        predictions = None
        if predict:
            predictions = self.heads(hidden[-1])
            keep = valid_mask(pooled.lengths, predictions.shape[2])[:, None, :, None]
            predictions = predictions.masked_fill(~keep, 0.0)
        return StudentOutput(hidden, pooled.lengths, alpha, alpha_mod, frame_lengths, predictions, pooled.centers,
                             features)


def _full_precision(device: torch.device):
    """Autocast off (float32) on ``device``; a no-op where autocast does not exist."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class _GradMultiply(torch.autograd.Function):
    """Identity forward; the gradient times ``scale`` backward (fairseq's GradMultiply)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level component plus ``total``."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
