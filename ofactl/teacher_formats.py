"""Teacher checkpoint formats: torchaudio state dicts, fairseq checkpoints and Hugging Face folders.

Each reader returns ``(TeacherConfig, state dict under torchaudio's names)``;
:func:`load_state` loads it into a :class:`~ofactl.teacher.Teacher` with
one-line errors.  Files are read with ``torch.load(weights_only=True)`` (or
safetensors); fairseq's conv layer string is parsed, never evaluated
(:func:`parse_conv_layers`).  The fairseq key map and the weight-norm helpers
are shared with the s3prl importer (``ofactl.s3prl_import``).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from ofactl.errors import OfactlError
from ofactl.teacher import _CONFIG_FIELDS, _SPEC_HINT, _STANDARD_KERNELS, _STANDARD_STRIDES, Teacher, TeacherConfig

__all__ = ["load_state", "parse_conv_layers", "read_checkpoint_file", "read_huggingface_dir"]


# --- reading files


def _safe_globals() -> list[Any]:
    """Inert types that ``weights_only`` loading may reconstruct.

    Old fairseq checkpoints store their config as a pickled ``argparse.Namespace``
    (attributes only, no code runs when it is rebuilt), and a few of its values
    may be numpy scalars (``numpy.core.multiarray.scalar`` rebuilds a number from
    bytes and a ``numpy.dtype``).  Nothing else is allowed: a file that pickles
    any other object (optimizer state with custom classes, fairseq meters) is
    refused rather than executed.
    """
    allowed: list[Any] = [argparse.Namespace]
    try:
        import numpy as np
    except ImportError:  # numpy is optional: without it numpy-pickled values are refused
        return allowed
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    # numpy 1.x pickles name the module ``numpy.core``, numpy 2.x ``numpy._core``.
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def _first_line(exc: BaseException) -> str:
    """A short one-line reason for ``exc``."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        name = re.search(r"GLOBAL ([\w.]+)", text)
        if name:
            return f"it pickles a Python object ({name.group(1)}), which is not loaded for safety"
        return "it is corrupt or pickles Python objects that are not loaded for safety"
    line = text.splitlines()[0].split(". ")[0] if text else ""
    if len(line) < 12:  # e.g. a bare KeyError / EOFError
        line = f"{type(exc).__name__} {line}".strip()
    return line[:200]


_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # zip (torch >= 1.6) or a legacy pickle


def _torch_load(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise OfactlError(f"cannot read {path}: {exc.strerror or exc}", hint=_SPEC_HINT) from exc
    if not head:
        raise OfactlError(f"cannot read {path}: the file is empty", hint=_SPEC_HINT)
    if not head.startswith(_TORCH_MAGIC):
        raise OfactlError(f"cannot read {path}: not a PyTorch or safetensors file", hint=_SPEC_HINT)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a user-facing error
        reason = _first_line(exc)
        hint = _SPEC_HINT
        text = str(exc)
        if "Weights only load failed" in text or "not loaded for safety" in text:
            # never torch's own text: it suggests loading the file with weights_only=False
            found = re.search(r"GLOBAL ([\w.]+)", text)
            reason = (f"it holds Python objects ({found.group(1) if found else 'code'}) that ofactl does not allow; "
                      "refused, nothing in it was loaded")
            hint = ("re-save only the weights and config, in an environment you trust: "
                    "torch.save({'model': ck['model'], 'cfg': ck['cfg']}, 'clean.pt')")
        raise OfactlError(f"cannot read {path} as a checkpoint: {reason}", hint=hint) from None


def _is_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise OfactlError(f"cannot read {path}: the safetensors package is not installed",
                          hint="pip install safetensors") from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise OfactlError(f"cannot read {path} as safetensors: {_first_line(exc)}", hint=_SPEC_HINT) from exc


def _read_weights_file(path: Path) -> Any:
    return _load_safetensors(path) if _is_safetensors(path) else _torch_load(path)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def read_checkpoint_file(path: Path) -> tuple[TeacherConfig, dict[str, Tensor]]:
    if path.name == "config.json":
        raise OfactlError(f"{path} is a config file, not a checkpoint",
                          hint=f"pass the Hugging Face model directory {path.parent}")
    obj = _read_weights_file(path)
    if isinstance(obj, Mapping) and "model" in obj and ("cfg" in obj or "args" in obj):
        return _convert_fairseq(obj, path)
    if not _is_tensor_dict(obj):
        found = type(obj).__name__
        if isinstance(obj, Mapping):
            found = f"a dict with keys {', '.join(map(str, list(obj)[:6]))}"
        raise OfactlError(f"{path} is not a HuBERT checkpoint: found {found}", hint=_SPEC_HINT)
    layout = _flat_layout(obj)
    if layout == "torchaudio":
        return _convert_torchaudio(obj, path)
    if layout == "huggingface":
        hint = "a Hugging Face state dict needs its config.json: pass the model directory"
        if (path.parent / "config.json").exists():
            return read_huggingface_dir(path.parent)
        raise OfactlError(f"{path} holds Hugging Face weights without a config.json next to it", hint=hint)
    if layout == "fairseq":
        raise OfactlError(f"{path} holds fairseq weights without their config",
                          hint="pass the fairseq checkpoint itself (a dict with 'model' and 'cfg')")
    some = ", ".join(list(obj)[:4])
    raise OfactlError(f"{path}: unknown key layout (first keys: {some})", hint=_SPEC_HINT)


def _strip_prefix(state: Mapping[str, Tensor], prefixes: Sequence[str]) -> dict[str, Tensor]:
    for prefix in prefixes:
        if any(k.startswith(prefix + "feature_extractor.") for k in state):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return dict(state)


def _flat_layout(state: Mapping[str, Tensor]) -> str:
    keys = list(_strip_prefix(state, ("wav2vec2.", "hubert.")))
    if any(k.startswith("encoder.transformer.") for k in keys):
        return "torchaudio"
    if any(k.startswith(("feature_projection.", "encoder.pos_conv_embed.")) for k in keys):
        return "huggingface"
    if any(k.startswith(("post_extract_proj.", "encoder.pos_conv.")) for k in keys):
        return "fairseq"
    return "unknown"


# --- weight norm of the positional convolution

_WN_FORMS = {
    "legacy": ("weight_g", "weight_v"),
    "parametrized": ("parametrizations.weight.original0", "parametrizations.weight.original1"),
}


def _normalise_weight_norm(state: dict[str, Tensor], conv_prefix: str, target: str) -> None:
    """Rewrite the positional conv's weight-norm keys under ``conv_prefix`` into ``target`` form.

    Accepts ``weight_g/weight_v``, ``parametrizations.weight.original0/1`` or a plain
    ``weight`` (weight norm removed: g is recomputed as the norm over dims 0, 1).
    """
    g_key, v_key = (conv_prefix + n for n in _WN_FORMS[target])
    if g_key in state and v_key in state:
        return
    for form, (g_name, v_name) in _WN_FORMS.items():
        if form != target and conv_prefix + g_name in state and conv_prefix + v_name in state:
            state[g_key] = state.pop(conv_prefix + g_name)
            state[v_key] = state.pop(conv_prefix + v_name)
            return
    if conv_prefix + "weight" in state:
        weight = state.pop(conv_prefix + "weight")
        state[v_key] = weight
        state[g_key] = torch.linalg.vector_norm(weight.float(), dim=(0, 1), keepdim=True).to(weight.dtype)


def _pos_conv_weight(state: Mapping[str, Tensor], conv_prefix: str) -> Tensor | None:
    for name in ("weight_v", "parametrizations.weight.original1", "weight"):
        if conv_prefix + name in state:
            return state[conv_prefix + name]
    return None


_TA_POS_CONV = "encoder.transformer.pos_conv_embed.conv."


def load_state(teacher: Teacher, state: dict[str, Tensor], name: Path) -> None:
    """Strict load with one-line errors (missing, unexpected or mis-shaped tensors)."""
    own = teacher.state_dict()
    target = "parametrized" if _TA_POS_CONV + _WN_FORMS["parametrized"][0] in own else "legacy"
    _normalise_weight_norm(state, _TA_POS_CONV, target)
    mismatch = ("the weights do not match the config (config.json, the fairseq cfg, or the <file>.json sidecar "
                "of a torchaudio state dict), or this is not a wav2vec2/HuBERT model")
    missing = [k for k in own if k not in state]
    if missing:
        raise OfactlError(
            f"{name}: the checkpoint has no tensor {missing[0]}"
            + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""),
            hint=mismatch,
        )
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise OfactlError(
            f"{name}: unexpected tensor {unexpected[0]}"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""),
            hint=mismatch,
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise OfactlError(
                f"{name}: tensor {key} has shape {tuple(state[key].shape)}, the config expects {tuple(value.shape)}",
                hint=mismatch,
            )
        if not state[key].is_floating_point():
            raise OfactlError(f"{name}: tensor {key} has dtype {state[key].dtype}, expected a float tensor")
    teacher.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    teacher.float()


def _make_config(fields: Mapping[str, Any], source: Path, hint: str) -> TeacherConfig:
    """:class:`TeacherConfig` whose validation error names ``source``."""
    try:
        return TeacherConfig(**fields)
    except OfactlError as exc:
        raise OfactlError(f"{source}: {exc.message}", hint=hint) from None


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
        raise OfactlError(f"cannot read the teacher config sidecar {sidecar}: {_first_line(exc)}",
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
        raise OfactlError(f"{path}: bad fairseq model config: {_first_line(exc)}", hint=_SPEC_HINT) from exc
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
        raise OfactlError(f"cannot read {config_file}: {_first_line(exc)}", hint=_SPEC_HINT) from exc
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
        raise OfactlError(f"{config_file}: {_first_line(exc)}", hint=_SPEC_HINT) from exc
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
