"""Hugging Face folders (config.json + weights): hubert and wav2vec2 model types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from ofactl.errors import OfactlError, first_line
from ofactl.teacher import _SPEC_HINT, TeacherConfig
from ofactl.teacher_formats.common import (
    _is_tensor_dict,
    _make_config,
    _read_weights_file,
    _strip_prefix,
)

# --- Hugging Face

_HF_MODEL_TYPES = ("hubert", "wav2vec2")
#: Heads and pretraining modules of HF models, not part of the teacher.
_HF_DROP = ("masked_spec_embed", "lm_head.", "quantizer.", "project_q.", "project_hid.", "projector.",
            "classifier.", "layer_weights", "dropout_features.")


def _hf_config(path: Path) -> TeacherConfig:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise OfactlError(f"directory {path} has no config.json",
                          hint="pass a Hugging Face model directory (config.json + model.safetensors) "
                               "or a checkpoint file")
    try:
        cfg = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OfactlError(f"cannot read {config_file}: {first_line(exc)}", hint=_SPEC_HINT) from exc
    if not isinstance(cfg, dict):
        raise OfactlError(f"{config_file} is not a JSON object", hint=_SPEC_HINT)
    model_type = cfg.get("model_type")
    if model_type not in _HF_MODEL_TYPES:
        raise OfactlError(f"{config_file}: unsupported model_type {model_type!r}",
                          hint=f"supported: {', '.join(_HF_MODEL_TYPES)} (HuBERT / wav2vec2 layout)")
    unsupported = []
    if cfg.get("conv_pos_batch_norm"):
        unsupported.append("conv_pos_batch_norm")
    if cfg.get("add_adapter"):
        unsupported.append("add_adapter")
    if cfg.get("feat_proj_layer_norm", True) is False:
        unsupported.append("feat_proj_layer_norm=false")
    for act in ("hidden_act", "feat_extract_activation"):
        if cfg.get(act, "gelu") != "gelu":
            unsupported.append(f"{act}={cfg[act]!r}")
    if unsupported:
        raise OfactlError(f"{config_file}: unsupported option(s) {', '.join(unsupported)}", hint=_SPEC_HINT)
    norms = {"group": "group_norm", "layer": "layer_norm"}

    def get(name: str) -> Any:
        if cfg.get(name) is None:
            raise KeyError(name)
        return cfg[name]

    try:
        conv_layers = tuple(zip(get("conv_dim"), get("conv_kernel"), get("conv_stride"), strict=True))
        norm = cfg.get("feat_extract_norm", "group")
        if norm not in norms:
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', found {norm!r}")
        fields = dict(
            conv_layers=conv_layers,
            norm_mode=norms[norm],
            conv_bias=bool(cfg.get("conv_bias", False)),
            embed_dim=int(get("hidden_size")),
            num_layers=int(get("num_hidden_layers")),
            num_heads=int(get("num_attention_heads")),
            ffn_dim=int(get("intermediate_size")),
            pos_conv_kernel=int(get("num_conv_pos_embeddings")),
            pos_conv_groups=int(get("num_conv_pos_embedding_groups")),
            layer_norm_first=bool(cfg.get("do_stable_layer_norm", False)),
        )
    except KeyError as exc:
        raise OfactlError(f"{config_file}: missing field {exc.args[0]!r}", hint=_SPEC_HINT) from exc
    except (TypeError, ValueError) as exc:
        raise OfactlError(f"{config_file}: {first_line(exc)}", hint=_SPEC_HINT) from exc
    return _make_config(fields, config_file, "fix config.json")


def _hf_weights(path: Path) -> dict[str, Tensor]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            state = _read_weights_file(path / name)
            if not _is_tensor_dict(state):
                raise OfactlError(f"{path / name} is not a state dict", hint=_SPEC_HINT)
            return state
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_file = path / name
        if index_file.is_file():
            try:
                shards = sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
                raise OfactlError(f"cannot read the shard index {index_file}", hint=_SPEC_HINT) from exc
            state: dict[str, Tensor] = {}
            for shard in shards:
                shard_path = path / shard
                if not shard_path.is_file() or Path(shard).is_absolute() or ".." in Path(shard).parts:
                    raise OfactlError(f"{index_file} names a missing shard {shard}", hint=_SPEC_HINT)
                part = _read_weights_file(shard_path)
                if not _is_tensor_dict(part):
                    raise OfactlError(f"{shard_path} is not a state dict", hint=_SPEC_HINT)
                state.update(part)
            return state
    raise OfactlError(f"directory {path} has config.json but no model.safetensors or pytorch_model.bin",
                      hint="copy the weights file next to config.json")


def read_huggingface_dir(path: Path) -> tuple[TeacherConfig, dict[str, Tensor]]:
    config = _hf_config(path)
    state = _strip_prefix(_hf_weights(path), ("hubert.", "wav2vec2."))
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith(_HF_DROP):
            continue
        if key.startswith("feature_projection."):
            key = "encoder." + key
        elif key.startswith("encoder."):
            key = "encoder.transformer." + key[len("encoder."):]
        converted[key] = value
    return config, converted
