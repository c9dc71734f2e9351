"""torchaudio state dicts (the HUBERT_BASE bundle's form): the architecture inferred from tensor shapes, with an optional sidecar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor

from ofactl.errors import OfactlError, first_line
from ofactl.teacher import (
    _CONFIG_FIELDS,
    _SPEC_HINT,
    _STANDARD_KERNELS,
    _STANDARD_STRIDES,
    TeacherConfig,
)
from ofactl.teacher_formats.common import (
    _TA_POS_CONV,
    _make_config,
    _pos_conv_weight,
    _strip_prefix,
)

# --- torchaudio


def _layer_indices(keys: Sequence[str], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = Path(str(path) + ".json")
    if not sidecar.exists():
        return {}
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OfactlError(f"cannot read the teacher config sidecar {sidecar}: {first_line(exc)}",
                          hint="it must be a JSON object of TeacherConfig fields") from exc
    if not isinstance(data, dict):
        raise OfactlError(f"the teacher config sidecar {sidecar} must be a JSON object, found {type(data).__name__}")
    unknown = sorted(set(data) - set(_CONFIG_FIELDS))
    if unknown:
        raise OfactlError(f"unknown field(s) in {sidecar}: {', '.join(unknown)}",
                          hint=f"valid fields: {', '.join(_CONFIG_FIELDS)}")
    return data


def _infer_conv(state: Mapping[str, Tensor], prefix: str, path: Path, sidecar: Mapping[str, Any]
                ) -> tuple[tuple[tuple[int, int, int], ...], str, bool]:
    """CNN layers, norm mode and bias from torchaudio/HF-named conv weights under ``prefix``."""
    keys = list(state)
    indices = _layer_indices(keys, prefix + "conv_layers.")
    if not indices or indices != list(range(len(indices))):
        raise OfactlError(f"{path}: cannot find the CNN layers ({prefix}conv_layers.N.conv.weight)", hint=_SPEC_HINT)
    shapes = []
    for i in indices:
        weight = state.get(f"{prefix}conv_layers.{i}.conv.weight")
        if weight is None or weight.ndim != 3:
            raise OfactlError(f"{path}: missing or malformed {prefix}conv_layers.{i}.conv.weight", hint=_SPEC_HINT)
        shapes.append((int(weight.shape[0]), int(weight.shape[2])))
    kernels = tuple(k for _, k in shapes)
    if "conv_layers" in sidecar:
        conv_layers = sidecar["conv_layers"]
    elif kernels == _STANDARD_KERNELS:
        conv_layers = tuple((c, k, s) for (c, k), s in zip(shapes, _STANDARD_STRIDES))
    else:
        raise OfactlError(
            f"{path}: non-standard CNN kernels {kernels}; the strides are not stored in the weights",
            hint=f"write {path}.json with \"conv_layers\": [[channels, kernel, stride], ...]",
        )
    with_norm = [i for i in indices if f"{prefix}conv_layers.{i}.layer_norm.weight" in state]
    if with_norm == [0] and len(indices) > 1:
        norm_mode = "group_norm"
    elif with_norm == indices:
        norm_mode = "layer_norm" if len(indices) > 1 else "group_norm"
    else:
        raise OfactlError(f"{path}: CNN norms on layers {with_norm} match neither group_norm (first layer only) "
                          f"nor layer_norm (every layer)", hint=_SPEC_HINT)
    conv_bias = f"{prefix}conv_layers.0.conv.bias" in state
    return conv_layers, norm_mode, conv_bias


def _convert_torchaudio(state: Mapping[str, Tensor], path: Path) -> tuple[TeacherConfig, dict[str, Tensor]]:
    state = _strip_prefix(state, ("wav2vec2.",))  # torchaudio's HuBERTPretrainModel wraps a Wav2Vec2Model
    # CTC head (aux) and HuBERT pretraining modules are not part of the teacher.
    state = {k: v for k, v in state.items() if not k.startswith(("aux.", "mask_generator.", "logit_generator."))}
    sidecar = _read_sidecar(path)
    conv_layers, norm_mode, conv_bias = _infer_conv(state, "feature_extractor.", path, sidecar)
    keys = list(state)
    try:
        embed_dim = int(state["encoder.feature_projection.projection.weight"].shape[0])
        num_layers = len(_layer_indices(keys, "encoder.transformer.layers."))
        ffn_dim = int(state["encoder.transformer.layers.0.feed_forward.intermediate_dense.weight"].shape[0])
    except KeyError as exc:
        raise OfactlError(f"{path}: incomplete torchaudio state dict, no tensor {exc.args[0]}", hint=_SPEC_HINT) from exc
    pos = _pos_conv_weight(state, _TA_POS_CONV)
    if pos is None or pos.ndim != 3:
        raise OfactlError(f"{path}: no positional convolution weight under {_TA_POS_CONV}", hint=_SPEC_HINT)
    inferred: dict[str, Any] = dict(
        conv_layers=conv_layers,
        norm_mode=norm_mode,
        conv_bias=conv_bias,
        embed_dim=embed_dim,
        num_layers=num_layers,
        # Not in the weights: torchaudio's bundles use 64-d heads up to 16 heads ...
        num_heads=max(1, min(embed_dim // 64, 16)),
        ffn_dim=ffn_dim,
        pos_conv_kernel=int(pos.shape[2]),
        pos_conv_groups=max(1, embed_dim // int(pos.shape[1])),
        # ... and are pre-LN exactly when their CNN uses layer_norm (HuBERT Large/XLarge,
        # wav2vec2 Large LV-60k, XLS-R); wav2vec2 Large (LS-960) is 1024-d and post-LN.
        layer_norm_first=norm_mode == "layer_norm",
    )
    inferred.update(sidecar)
    return _make_config(inferred, path, f"check {path}.json" if sidecar else f"write {path}.json"), state
