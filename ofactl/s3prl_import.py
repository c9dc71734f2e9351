"""DistilHuBERT checkpoints trained with s3prl, as ofactl students.

s3prl's distiller saves a torch file holding a dict: ``Distiller`` (the
``DistillerModel`` state dict), ``Config`` (``{"distiller": {...}, ...}``,
plain data) and training state (optimizer, step).  :func:`read_distiller`
reads it with ``torch.load(weights_only=True)`` (a file with Python objects in
it is refused, not loaded), turns the config into a :class:`StudentConfig`
(the conv layer string is parsed, never evaluated) and renames the weights to
ofactl's (torchaudio's) names.  The alpha module has no counterpart: an
imported student gets a freshly initialised one, so it is DistilHuBERT at
lambda 0 and needs OFA pretraining (``ofactl pretrain --init-student``)
before other lambdas mean anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ofactl.errors import OfactlError
from ofactl.model import OFAStudent, StudentConfig

__all__ = ["import_distilhubert", "read_distiller", "student_from_distiller"]

#: s3prl's DistillerConfig defaults (s3prl/upstream/distiller/model.py), for keys a config leaves out.
_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default",
    "extractor_conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "feature_grad_mult": 1.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "encoder_layers": 1,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "attention_type": "original",
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "encoder_layerdrop": 0.0,
    "final_dim": 768,
    "out_layer_type": "expand-last",
    "out_layer_inter_dim": -1,
    "n_tasks": 12,
    "task_emb_type": "expand-last",
}

_HINT = "an s3prl DistilHuBERT checkpoint is what s3prl's distiller pretraining saves (keys Distiller and Config)"


def read_distiller(path: str | Path) -> tuple[StudentConfig, dict[str, Tensor], dict[str, Any]]:
    """The student config, the weights under ofactl's names (no ``alpha_module.*``) and s3prl's distiller config.

    Raises:
        OfactlError: the file is not a DistilHuBERT checkpoint of s3prl's distiller (one line naming what it
            holds), a variant ofactl cannot represent, or holds Python objects (refused unloaded).
    """
    from ofactl.safe_load import torch_load

    path = Path(path)
    if not path.is_file():
        raise OfactlError(f"{path}: no such file", hint=_HINT)
    obj = torch_load(path, kind="an s3prl DistilHuBERT checkpoint")
    if not isinstance(obj, dict) or "Distiller" not in obj or not isinstance(obj.get("Config"), dict):
        raise OfactlError(f"{path} is not an s3prl DistilHuBERT checkpoint: it holds {_describe(obj)}", hint=_HINT)
    distiller = obj["Config"].get("distiller")
    if not isinstance(distiller, dict):
        raise OfactlError(f"{path}: its Config has no 'distiller' section", hint=_HINT)
    cfg = {**_DEFAULTS, **distiller}
    config = _student_config(cfg, path)
    state = _rename(obj["Distiller"], config, path)
    return config, state, cfg


def student_from_distiller(path: str | Path, seed: int = 0) -> OFAStudent:
    """An :class:`OFAStudent` with the checkpoint's weights and a freshly initialised (seeded) alpha module."""
    config, state, _ = read_distiller(path)
    torch.manual_seed(seed)
    student = OFAStudent(config)
    own = student.state_dict()
    from ofactl.teacher_formats.common import _TA_POS_CONV, _WN_FORMS, _normalise_weight_norm

    target = "parametrized" if _TA_POS_CONV + _WN_FORMS["parametrized"][0] in own else "legacy"
    _normalise_weight_norm(state, _TA_POS_CONV, target)
    missing = [k for k in own if k not in state and not k.startswith("alpha_module.")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"no tensor {missing[0]}" if missing else f"an unexpected tensor {unexpected[0]}"
        raise OfactlError(f"{path}: the weights do not match the distiller config (the checkpoint has {what})",
                          hint="the checkpoint's Config and Distiller disagree; is the file complete?")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise OfactlError(f"{path}: {key} has shape {tuple(value.shape)}, the config says {tuple(own[key].shape)}",
                              hint="the checkpoint's Config and Distiller disagree")
    student.load_state_dict(state, strict=False)
    return student


def import_distilhubert(path: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Write an ofactl model directory at ``out`` from an s3prl DistilHuBERT checkpoint; returns ``out``.

    The training state records where the weights came from and that the alpha module is freshly initialised
    (``ofactl info`` shows it).
    """
    from ofactl.checkpoint import save_model

    out = Path(out)
    if (out / "model.pt").exists():
        raise OfactlError(f"{out} already holds a model", hint="choose another --out")
    student = student_from_distiller(path, seed=seed)
    training = {"imported_from": str(Path(path).resolve()), "format": "s3prl distiller (DistilHuBERT)",
                "alpha_module": f"freshly initialised (seed {seed}): OFA-pretrain it (ofactl pretrain "
                                "--init-student) before using lambdas other than 0",
                "finished": False, "step": 0}
    save_model(out, student, training=training)
    return out


# ----------------------------------------------------------------------------- helpers


def _describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    keys = [str(k) for k in obj][:6]
    kind = ""
    if "cfg" in obj or "args" in obj:
        kind = " (a fairseq checkpoint, e.g. HuBERT: a teacher, for `ofactl pretrain --teacher`)"
    elif any(k.startswith(("encoder.layers.", "feature_extractor.")) for k in keys) or any(
            isinstance(v, Tensor) for v in list(obj.values())[:6]):
        kind = " (a bare state dict: s3prl's checkpoint also carries its Config)"
    elif "state_dict" in obj and "config" in obj:
        kind = " (an ofactl model file: use its directory as --model)"
    return f"top-level keys {', '.join(keys)}{'...' if len(obj) > 6 else ''}{kind}"


def _student_config(cfg: dict[str, Any], path: Path) -> StudentConfig:
    from ofactl.teacher_formats import parse_conv_layers

    unsupported = [(key, cfg[key], want) for key, want in (("task_emb_type", "expand-last"),
                                                          ("out_layer_type", "expand-last"),
                                                          ("attention_type", "original"),
                                                          ("activation_fn", "gelu"))
                   if cfg[key] != want]
    if unsupported:
        key, value, want = unsupported[0]
        raise OfactlError(f"{path}: distiller {key} is {value!r}; ofactl represents DistilHuBERT's {want!r} only",
                          hint="this is a DistilHuBERT variant ofactl cannot import")
    if cfg["extractor_mode"] not in ("default", "layer_norm"):
        raise OfactlError(f"{path}: unknown extractor_mode {cfg['extractor_mode']!r}")
    try:
        conv_layers = parse_conv_layers(str(cfg["extractor_conv_feature_layers"]))
    except ValueError as err:
        raise OfactlError(f"{path}: cannot read extractor_conv_feature_layers ({err})") from None
    n_tasks = int(cfg["n_tasks"])
    layers = list(cfg.get("pred_layer_id", range(1, n_tasks + 1)))
    if len(layers) != n_tasks:
        raise OfactlError(f"{path}: pred_layer_id has {len(layers)} layers for n_tasks {n_tasks}")
    embed = int(cfg["encoder_embed_dim"])
    inner = int(cfg["out_layer_inter_dim"])
    return StudentConfig(
        conv_layers=conv_layers,
        conv_norm_mode="group_norm" if cfg["extractor_mode"] == "default" else "layer_norm",
        conv_bias=False,
        embed_dim=embed,
        num_layers=int(cfg["encoder_layers"]),
        num_heads=int(cfg["encoder_attention_heads"]),
        ffn_dim=int(cfg["encoder_ffn_embed_dim"]),
        pos_conv_kernel=int(cfg["conv_pos"]),
        pos_conv_groups=int(cfg["conv_pos_groups"]),
        layer_norm_first=bool(cfg["layer_norm_first"]),
        dropout=float(cfg["dropout"]),
        attention_dropout=float(cfg["attention_dropout"]),
        activation_dropout=float(cfg["activation_dropout"]),
        input_dropout=0.0,
        layer_drop=float(cfg["encoder_layerdrop"]),
        projection_layer_norm=False,
        target_layers=tuple(int(v) for v in layers),
        target_dim=int(cfg["final_dim"]),
        head_inner_dim=inner if inner > 0 else embed,
        feature_grad_mult=min(1.0, max(0.0, float(cfg["feature_grad_mult"]))),
    )


def _rename(state: Any, config: StudentConfig, path: Path) -> dict[str, Tensor]:
    from ofactl.teacher_formats.fairseq import _map_fairseq_key

    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OfactlError(f"{path}: its Distiller entry is not a state dict of tensors", hint=_HINT)
    out: dict[str, Tensor] = {}
    n = len(config.target_layers)
    for key, value in state.items():
        if key == "output_layer.0.weight" or key == "output_layer.0.bias":
            out["heads.shared." + key.rsplit(".", 1)[1]] = value
        elif key == "output_layer.2.weight":  # SplitLinear: (n, in, out)
            out["heads.weight"] = value
        elif key == "output_layer.2.bias":  # (1, 1, n, out)
            out["heads.bias"] = value.reshape(n, -1)
        elif key == "output_layer.2.layer.weight":  # one head: SplitLinear wraps an nn.Linear (out, in)
            out["heads.weight"] = value.t()[None]
        elif key == "output_layer.2.layer.bias":
            out["heads.bias"] = value[None]
        else:
            try:
                name = _map_fairseq_key(key)
            except KeyError:
                raise OfactlError(f"{path}: unexpected tensor {key} in the Distiller state dict",
                                  hint="this is a DistilHuBERT variant ofactl cannot import") from None
            if name is not None:
                out[name] = value
    proj = "encoder.feature_projection.projection."
    if proj + "weight" not in out:  # s3prl has no projection where the CNN width already is the model's
        width = config.conv_layers[-1][0]
        if width != config.embed_dim:
            raise OfactlError(f"{path}: no post_extract_proj, but the CNN gives {width} channels for a "
                              f"{config.embed_dim}-wide encoder")
        out[proj + "weight"] = torch.eye(width)
        out[proj + "bias"] = torch.zeros(width)
    return out
