"""fairseq checkpoints: the key map to torchaudio's names and the conv layer string, parsed, never evaluated."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import Tensor

from ofactl.errors import OfactlError, first_line
from ofactl.teacher import _SPEC_HINT, TeacherConfig
from ofactl.teacher_formats.common import _is_tensor_dict, _make_config

# --- fairseq

#: Pretraining-only tensors of fairseq wav2vec2/HuBERT models.
_FAIRSEQ_DROP = re.compile(r"(mask_emb|label_embs_concat|final_proj\.|quantizer\.|project_q\.|target_glu\.)")

_FAIRSEQ_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)"),
     lambda m: f"feature_extractor.conv_layers.0.layer_norm.{m[1]}"),  # group norm (extractor_mode "default")
    (re.compile(r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)"),
     lambda m: f"feature_extractor.conv_layers.{m[1]}.conv.{m[2]}"),
    (re.compile(r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)"),
     lambda m: f"feature_extractor.conv_layers.{m[1]}.layer_norm.{m[2]}"),  # extractor_mode "layer_norm"
    (re.compile(r"post_extract_proj\.(weight|bias)"), lambda m: f"encoder.feature_projection.projection.{m[1]}"),
    (re.compile(r"layer_norm\.(weight|bias)"), lambda m: f"encoder.feature_projection.layer_norm.{m[1]}"),
    (re.compile(r"encoder\.pos_conv\.0\.(bias|weight_g|weight_v|weight|parametrizations\.weight\.original[01])"),
     lambda m: f"encoder.transformer.pos_conv_embed.conv.{m[1]}"),
    (re.compile(r"encoder\.layer_norm\.(weight|bias)"), lambda m: f"encoder.transformer.layer_norm.{m[1]}"),
    (re.compile(r"encoder\.layers\.(\d+)\.self_attn\.((?:k|v|q|out)_proj\.(?:weight|bias))"),
     lambda m: f"encoder.transformer.layers.{m[1]}.attention.{m[2]}"),
    (re.compile(r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)"),
     lambda m: f"encoder.transformer.layers.{m[1]}.layer_norm.{m[2]}"),
    (re.compile(r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)"),
     lambda m: f"encoder.transformer.layers.{m[1]}.feed_forward.intermediate_dense.{m[2]}"),
    (re.compile(r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)"),
     lambda m: f"encoder.transformer.layers.{m[1]}.feed_forward.output_dense.{m[2]}"),
    (re.compile(r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)"),
     lambda m: f"encoder.transformer.layers.{m[1]}.final_layer_norm.{m[2]}"),
]


def _map_fairseq_key(key: str) -> str | None:
    """torchaudio name of a fairseq wav2vec2/HuBERT key; None for pretraining-only keys.

    Raises KeyError for a key that is neither.
    """
    if _FAIRSEQ_DROP.match(key):
        return None
    for pattern, rename in _FAIRSEQ_RULES:
        match = pattern.fullmatch(key)
        if match:
            return rename(match)
    raise KeyError(key)


_MAX_CONV_LAYERS = 64


def parse_conv_layers(text: str) -> tuple[tuple[int, int, int], ...]:
    """Parse fairseq's ``conv_feature_layers`` string without evaluating it.

    Only list/tuple/int literals and ``+``/``*`` are accepted, e.g.
    ``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``.

    Raises:
        ValueError: for anything else (names, calls, attributes, huge repeats, ...).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a list expression: {text!r}") from exc

    def size(value: Any) -> int:
        return len(value) if isinstance(value, (list, tuple)) else 1

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.List):
            return [walk(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(walk(e) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                if type(left) is not type(right):
                    raise ValueError(f"cannot add {type(left).__name__} and {type(right).__name__}")
                result = left + right
            else:
                sequence, count = (left, right) if isinstance(right, int) else (right, left)
                if not isinstance(count, int):
                    raise ValueError("can only repeat a list by an int")
                if isinstance(sequence, int):
                    if abs(sequence) > 10**9 or abs(count) > 10**9:
                        raise ValueError("number too large")
                elif count * size(sequence) > _MAX_CONV_LAYERS:
                    raise ValueError(f"more than {_MAX_CONV_LAYERS} layers")
                result = sequence * count
            if size(result) > _MAX_CONV_LAYERS:
                raise ValueError(f"more than {_MAX_CONV_LAYERS} layers")
            return result
        raise ValueError(f"{type(node).__name__} is not allowed (only list/tuple/int literals, + and *)")

    value = walk(tree)
    if not isinstance(value, list) or not value or not all(
            isinstance(layer, tuple) and len(layer) == 3 and all(isinstance(v, int) and v > 0 for v in layer)
            for layer in value):
        raise ValueError(f"expected a list of (channels, kernel, stride) triples, found {value!r}")
    return tuple(value)


_FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "extractor_mode": "default",
    "conv_bias": False,
    "encoder_embed_dim": 768,
    "encoder_layers": 12,
    "encoder_attention_heads": 12,
    "encoder_ffn_embed_dim": 3072,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "layer_norm_first": False,
}


def _convert_fairseq(ckpt: Mapping[str, Any], path: Path) -> tuple[TeacherConfig, dict[str, Tensor]]:
    if ckpt.get("cfg") is not None:
        cfg = ckpt["cfg"]
        model_cfg = cfg.get("model") if isinstance(cfg, Mapping) else None
        if not isinstance(model_cfg, Mapping):
            raise OfactlError(f"{path}: fairseq 'cfg' has no 'model' section", hint=_SPEC_HINT)
        model_cfg = dict(model_cfg)
    elif isinstance(ckpt.get("args"), argparse.Namespace):
        model_cfg = vars(ckpt["args"])
    else:
        raise OfactlError(f"{path}: fairseq checkpoint without a usable 'cfg' or 'args'", hint=_SPEC_HINT)
    state = ckpt["model"]
    if not _is_tensor_dict(state):
        raise OfactlError(f"{path}: fairseq 'model' entry is not a state dict", hint=_SPEC_HINT)
    if any(k.startswith("w2v_encoder.") for k in state) or "w2v_args" in model_cfg:
        raise OfactlError(f"{path} is a fine-tuned (CTC) fairseq checkpoint",
                          hint="pass the pretrained checkpoint it was fine-tuned from (e.g. hubert_base_ls960.pt)")
    if int(model_cfg.get("pos_conv_depth", 1) or 1) != 1:
        raise OfactlError(f"{path}: pos_conv_depth={model_cfg['pos_conv_depth']} is not supported (only 1)",
                          hint=_SPEC_HINT)

    def field(name: str) -> Any:
        value = model_cfg.get(name)
        return _FAIRSEQ_DEFAULTS[name] if value is None else value

    try:
        conv_layers = parse_conv_layers(str(field("conv_feature_layers")))
    except ValueError as exc:
        raise OfactlError(f"{path}: cannot parse conv_feature_layers: {exc}",
                          hint="it must look like \"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2\"") from exc
    mode = field("extractor_mode")
    norm_modes = {"default": "group_norm", "layer_norm": "layer_norm"}
    if mode not in norm_modes:
        raise OfactlError(f"{path}: unsupported extractor_mode {mode!r}", hint="expected 'default' or 'layer_norm'")
    try:
        fields = dict(
            conv_layers=conv_layers,
            norm_mode=norm_modes[mode],
            conv_bias=bool(field("conv_bias")),
            embed_dim=int(field("encoder_embed_dim")),
            num_layers=int(field("encoder_layers")),
            num_heads=int(field("encoder_attention_heads")),
            ffn_dim=int(field("encoder_ffn_embed_dim")),
            pos_conv_kernel=int(field("conv_pos")),
            pos_conv_groups=int(field("conv_pos_groups")),
            layer_norm_first=bool(field("layer_norm_first")),
        )
    except (TypeError, ValueError) as exc:
        raise OfactlError(f"{path}: bad fairseq model config: {first_line(exc)}", hint=_SPEC_HINT) from exc
    config = _make_config(fields, path, "the checkpoint's cfg['model'] is inconsistent")
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        try:
            new = _map_fairseq_key(key)
        except KeyError:
            raise OfactlError(f"{path}: unexpected fairseq tensor {key}",
                              hint="only pretrained wav2vec2/HuBERT checkpoints are supported") from None
        if new is not None:
            converted[new] = value
    return config, converted
