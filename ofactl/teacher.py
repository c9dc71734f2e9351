"""The frozen teacher: HuBERT (or wav2vec2) loaded from local files, without fairseq or transformers.

:func:`load_teacher` accepts, detected by content (never by extension):

* a **fairseq** checkpoint (``hubert_base_ls960.pt``): a dict with ``model`` (the
  state dict) and ``cfg`` (a plain dict, ``cfg["model"]`` holding the model
  fields) or, in older files, ``args`` (an ``argparse.Namespace`` with the same
  fields).  Pretraining-only tensors (``mask_emb``, ``label_embs_concat``,
  ``final_proj``, ...) are dropped.
* a **torchaudio** state dict (``hubert_fairseq_base_ls960.pth`` of torchaudio's
  ``HUBERT_BASE`` bundle): the keys of :class:`torchaudio.models.Wav2Vec2Model`.
  Such a file carries no config, so it is inferred from tensor shapes: CNN
  channels and kernels from the conv weights (strides from the standard
  wav2vec2 kernel pattern ``(10, 3, 3, 3, 3, 2, 2)``), the CNN norm mode from
  which conv layers have norm weights, dimensions, layer count and the
  positional conv from their weights.  Two things are not in the weights and
  follow torchaudio's bundles: ``num_heads = min(embed_dim // 64, 16)`` and
  ``layer_norm_first = (norm_mode == "layer_norm")``.  A JSON **sidecar**
  ``<file>.json`` next to the file (e.g. ``hubert.pth.json``) holding any
  :class:`TeacherConfig` fields overrides what was inferred; write one for a
  model that differs from the bundles.
* a **Hugging Face** model directory (``config.json`` plus ``model.safetensors``,
  ``pytorch_model.bin`` or their sharded index), ``model_type`` ``hubert`` or
  ``wav2vec2``; ``hubert.``/``wav2vec2.`` key prefixes (``ForCTC`` models) are
  stripped and heads are dropped.
* ``"tiny-random"`` or ``"tiny-random:SEED"``: a small random HuBERT-shaped
  teacher for tests and demos, deterministic per seed.

Every file is read with ``torch.load(weights_only=True)`` (or safetensors);
nothing is downloaded, nothing from a config is evaluated.  Every failure is
one :class:`~ofactl.errors.OfactlError` naming the file and what to pass instead.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from ofactl.errors import OfactlError
from ofactl.layers import ConvFeatureExtractor, build_encoder, run_encoder

__all__ = ["TeacherConfig", "Teacher", "TeacherOutput", "load_teacher", "init_student_from_teacher"]

_SPEC_HINT = (
    "pass a fairseq HuBERT checkpoint (hubert_base_ls960.pt), a torchaudio state dict "
    "(hubert_fairseq_base_ls960.pth), a Hugging Face model directory (config.json + model.safetensors) "
    "or 'tiny-random[:SEED]'"
)

#: Kernel pattern of the wav2vec2/HuBERT CNN and its strides (strides are not stored in weights).
_STANDARD_KERNELS = (10, 3, 3, 3, 3, 2, 2)
_STANDARD_STRIDES = (5, 2, 2, 2, 2, 2, 2)


# --------------------------------------------------------------------------------------------- config


@dataclass
class TeacherConfig:
    """Sizes of a wav2vec2/HuBERT teacher.  Defaults: HuBERT Base.

    ``layer_norm_first`` has fairseq's meaning: False is post-LN (HuBERT Base),
    True is pre-LN (HuBERT Large).
    """

    conv_layers: tuple[tuple[int, int, int], ...] = tuple(zip((512,) * 7, _STANDARD_KERNELS, _STANDARD_STRIDES))
    norm_mode: str = "group_norm"
    conv_bias: bool = False
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False

    def __post_init__(self) -> None:
        problems = []
        try:
            self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)  # type: ignore[assignment]
        except (TypeError, ValueError):
            problems.append(f"conv_layers must be (channels, kernel, stride) triples, found {self.conv_layers!r}")
        else:
            if not self.conv_layers or any(len(layer) != 3 or min(layer) < 1 for layer in self.conv_layers):
                problems.append(f"conv_layers must be (channels, kernel, stride) triples of positive ints, "
                                f"found {self.conv_layers}")
        if self.norm_mode not in ("group_norm", "layer_norm"):
            problems.append(f"norm_mode must be 'group_norm' or 'layer_norm', found {self.norm_mode!r}")
        for name in ("embed_dim", "num_layers", "num_heads", "ffn_dim", "pos_conv_kernel", "pos_conv_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive int, found {value!r}")
        for name in ("conv_bias", "layer_norm_first"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, found {getattr(self, name)!r}")
        if not problems:
            if self.embed_dim % self.num_heads:
                problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
            if self.embed_dim % self.pos_conv_groups:
                problems.append(f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        if problems:
            raise OfactlError("invalid teacher config: " + "; ".join(problems))

    @classmethod
    def tiny(cls) -> TeacherConfig:
        """The ``tiny-random`` sizes (the student's ``tiny`` preset predicts its layers 2, 4, 6)."""
        return cls(
            conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
            norm_mode="group_norm",
            conv_bias=False,
            embed_dim=64,
            num_layers=6,
            num_heads=4,
            ffn_dim=128,
            pos_conv_kernel=16,
            pos_conv_groups=4,
            layer_norm_first=False,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (the sidecar format)."""
        d = dataclasses.asdict(self)
        d["conv_layers"] = [list(layer) for layer in self.conv_layers]
        return d


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TeacherConfig))


# --------------------------------------------------------------------------------------------- model


class TeacherOutput(NamedTuple):
    """What :meth:`Teacher.forward` returns.

    Attributes:
        hidden_states: ``[h_0, ..., h_K]``, each ``(batch, frame, embed_dim)``: ``h_0``
            is the transformer input, ``h_i`` the output of layer ``i``; zero on padding.
        lengths: ``(batch,)`` valid CNN frames.
        features: ``(batch, frame, conv_dim)`` CNN output, zero on padding.
    """

    hidden_states: list[Tensor]
    lengths: Tensor
    features: Tensor


class Teacher(nn.Module):
    """A frozen wav2vec2/HuBERT model (fp32, always in eval mode).

    Submodules are named like torchaudio's ``Wav2Vec2Model`` (``feature_extractor``,
    ``encoder``), so its state-dict keys are torchaudio's.  ``.train()`` is a
    no-op: a parent module switching to training leaves the teacher in eval mode.
    """

    def __init__(self, config: TeacherConfig | None = None):
        super().__init__()
        self.config = config or TeacherConfig()
        c = self.config
        self.feature_extractor = ConvFeatureExtractor(c.conv_layers, c.norm_mode, c.conv_bias)
        self.encoder = build_encoder(
            in_dim=self.feature_extractor.out_dim,
            embed_dim=c.embed_dim,
            num_layers=c.num_layers,
            num_heads=c.num_heads,
            ffn_dim=c.ffn_dim,
            pos_conv_kernel=c.pos_conv_kernel,
            pos_conv_groups=c.pos_conv_groups,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            input_dropout=0.0,
            layer_norm_first=c.layer_norm_first,
            layer_drop=0.0,
        )
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Teacher:
        """Stays in eval mode whatever ``mode`` is (the teacher is frozen)."""
        return super().train(False)

    @property
    def hop_samples(self) -> int:
        """Samples between CNN frames (320 = 20 ms for the wav2vec2 CNN)."""
        return self.feature_extractor.hop_samples

    @torch.no_grad()
    def forward(
        self,
        audio: Tensor,
        audio_lengths: Tensor | None = None,
        layers: Sequence[int] | None = None,
    ) -> TeacherOutput:
        """Args:
            audio: ``(batch, samples)`` float waveform at 16 kHz.
            audio_lengths: ``(batch,)`` valid samples, or None when unpadded.
            layers: the layers the caller needs (0 = transformer input); only
                ``max(layers)`` layers run.  None runs all of them.

        Returns:
            :class:`TeacherOutput` with ``hidden_states = [h_0, ..., h_K]``,
            ``K = max(layers)`` (or ``num_layers``).  For a pre-LN teacher the
            final layer norm is part of the last layer only (as in Hugging Face),
            so ``h_L`` is normalised and intermediate layers are not.
        """
        if audio.ndim != 2:
            raise OfactlError(f"teacher input must have shape (batch, samples), found {tuple(audio.shape)}")
        num_layers = self.config.num_layers
        if layers is None:
            depth = num_layers
        else:
            layers = [int(i) for i in layers]
            bad = [i for i in layers if not 0 <= i <= num_layers]
            if not layers or bad:
                raise OfactlError(
                    f"teacher layers must be in [0, {num_layers}], found {list(layers)}",
                    hint=f"this teacher has {num_layers} transformer layers",
                )
            depth = max(layers)
        features, lengths = self.feature_extractor(audio.float(), audio_lengths)
        hidden = run_encoder(self.encoder, features, lengths, depth)
        return TeacherOutput(hidden, lengths, features)


# --------------------------------------------------------------------------------------------- loading


def load_teacher(spec: str | Path, device: str | torch.device = "cpu") -> Teacher:
    """Load a frozen teacher from a local checkpoint (see the module docstring for formats).

    Args:
        spec: a fairseq ``.pt``, a torchaudio ``.pth`` state dict (optional
            ``<file>.json`` sidecar), a Hugging Face model directory, or
            ``"tiny-random"`` / ``"tiny-random:SEED"``.
        device: where to put the model.

    Raises:
        OfactlError: one line naming the file, for every problem.
    """
    if isinstance(spec, str):
        match = re.fullmatch(r"tiny-random(?::(.*))?", spec.strip())
        if match:
            seed_text = match.group(1)
            if seed_text is not None and not re.fullmatch(r"\d+", seed_text):
                raise OfactlError(f"bad teacher spec {spec!r}: the seed must be a non-negative integer",
                                  hint="use 'tiny-random' or 'tiny-random:SEED', e.g. 'tiny-random:0'")
            return _tiny_random(int(seed_text or 0)).to(device)
    from ofactl.teacher_formats import load_state, read_checkpoint_file, read_huggingface_dir

    path = Path(spec).expanduser()
    if not path.exists():
        raise OfactlError(f"teacher checkpoint not found: {path}", hint=_SPEC_HINT)
    config, state = read_huggingface_dir(path) if path.is_dir() else read_checkpoint_file(path)
    teacher = Teacher(config)
    load_state(teacher, state, path)
    return teacher.to(device)


def _tiny_random(seed: int) -> Teacher:
    """Random tiny HuBERT; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = Teacher(TeacherConfig.tiny())
        # Give norms non-trivial affine parameters too, so a copy that forgets one is detectable.
        with torch.no_grad():
            for module in teacher.modules():
                if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) and module.weight is not None:
                    module.weight.add_(0.1 * torch.randn_like(module.weight))
                    module.bias.add_(0.1 * torch.randn_like(module.bias))
    return teacher


# --------------------------------------------------------------------------------------------- student init


_PROJECTION_NORM = "encoder.feature_projection.layer_norm."

_SHARED_PREFIXES = (
    "feature_extractor.",
    "encoder.feature_projection.",
    "encoder.transformer.pos_conv_embed.",
    "encoder.transformer.layer_norm.",
)


def init_student_from_teacher(student: nn.Module, teacher: nn.Module, num_layers: int | None = None) -> list[str]:
    """DistilHuBERT initialisation: copy the teacher's CNN, projection, positional conv,
    encoder layer norm and first transformer layers into ``student``.

    Both models must name their parts like torchaudio's ``Wav2Vec2Model``
    (``feature_extractor``, ``encoder``).

    Args:
        student: e.g. :class:`ofactl.model.OFAStudent`.
        teacher: a :class:`Teacher`.
        num_layers: how many layers to copy; default all of the student's.

    Returns:
        The copied state-dict keys.

    Raises:
        OfactlError: a part is missing on one side or shapes differ (names the
            first such key and both shapes).
    """
    student_layers = len(student.encoder.transformer.layers)
    teacher_layers = len(teacher.encoder.transformer.layers)
    n = student_layers if num_layers is None else int(num_layers)
    if not 0 <= n <= min(student_layers, teacher_layers):
        raise OfactlError(
            f"cannot copy {n} transformer layers: the student has {student_layers}, the teacher {teacher_layers}",
            hint=f"use num_layers <= {min(student_layers, teacher_layers)}",
        )
    prefixes = _SHARED_PREFIXES + tuple(f"encoder.transformer.layers.{i}." for i in range(n))
    student_state = student.state_dict()
    teacher_state = teacher.state_dict()
    student_keys = [k for k in student_state if k.startswith(prefixes)]
    # DistilHuBERT has no LayerNorm before its projection: the teacher's (HuBERT's) is left behind, as s3prl does
    dropped = () if any(k.startswith(_PROJECTION_NORM) for k in student_keys) else (_PROJECTION_NORM,)
    teacher_keys = [k for k in teacher_state if k.startswith(prefixes) and not k.startswith(dropped)]
    for key in student_keys:
        if key not in teacher_state:
            raise OfactlError(f"cannot initialise the student from the teacher: the teacher has no {key}",
                              hint="student and teacher CNN/encoder layouts differ (norm mode, conv bias?)")
    for key in teacher_keys:
        if key not in student_state:
            raise OfactlError(f"cannot initialise the student from the teacher: the student has no {key}",
                              hint="student and teacher CNN/encoder layouts differ (norm mode, conv bias?)")
    for key in student_keys:
        s_shape, t_shape = tuple(student_state[key].shape), tuple(teacher_state[key].shape)
        if s_shape != t_shape:
            raise OfactlError(
                f"cannot initialise the student from the teacher: {key} has shape {s_shape} in the student "
                f"and {t_shape} in the teacher",
                hint="use a student config whose CNN and encoder sizes match the teacher's",
            )
    with torch.no_grad():
        for key in student_keys:
            student_state[key].copy_(teacher_state[key])
    return student_keys
