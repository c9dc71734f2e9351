"""What the readers share: safe file loading (weights only, safetensors), key layouts, the weight norm of the positional convolution, loading a state into a Teacher."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ofactl.errors import OfactlError, first_line
from ofactl.safe_load import torch_load
from ofactl.teacher import _SPEC_HINT, Teacher, TeacherConfig

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


def _torch_load(path: Path) -> Any:
    return torch_load(path, kind="a checkpoint", hint=_SPEC_HINT, allowed_globals=_safe_globals(),
                      refused_hint="re-save only the weights and config, in an environment you trust: "
                                   "torch.save({'model': ck['model'], 'cfg': ck['cfg']}, 'clean.pt')")


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
        raise OfactlError(f"cannot read {path} as safetensors: {first_line(exc)}", hint=_SPEC_HINT) from exc


def _read_weights_file(path: Path) -> Any:
    return _load_safetensors(path) if _is_safetensors(path) else _torch_load(path)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


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
    for keys, what, more in (([k for k in own if k not in state], "the checkpoint has no tensor", " missing"),
                             ([k for k in state if k not in own], "unexpected tensor", "")):
        if keys:
            extra = f" (and {len(keys) - 1} more{more})" if len(keys) > 1 else ""
            raise OfactlError(f"{name}: {what} {keys[0]}{extra}", hint=mismatch)
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
