"""Saving and loading ofactl models.

A model is a directory::

    exp/ofa/
      model.pt           the checkpoint (below); the only file needed to load the model
      config.yaml        a human-readable copy of the student config
      calibration.json   lambda <-> frame period table, once `ofactl calibrate` ran

``model.pt`` is a ``torch.save`` of a dict of plain data and tensors only, so
it loads with ``torch.load(..., weights_only=True)``::

    format_version  int, FORMAT_VERSION
    kind            "ofactl.student"
    config          dict, the StudentConfig as plain data
    state_dict      the unwrapped model's state dict (no ``module.`` / ``_orig_mod.``)
    training        dict, free-form plain data (step, lambda_max, teacher, ...)
    env             dict, ofactl / torch / python versions, platform, host, created_at (UTC)

Every problem reading a model is one :class:`~ofactl.errors.OfactlError` that
names the file, never a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import numbers
import os
import platform
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ofactl import __version__
from ofactl.atomic import atomic_write as _atomic_write
from ofactl.errors import OfactlError, first_line
from ofactl.safe_load import torch_load

if TYPE_CHECKING:
    from ofactl.model import OFAStudent

__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "MODEL_FILE",
    "CONFIG_FILE",
    "CALIBRATION_FILE",
    "COMPONENT_LABELS",
    "Checkpoint",
    "save_model",
    "read_checkpoint",
    "load_student",
    "describe_model",
    "model_sha256",
    "unwrap_model",
    "unwrap_state_dict",
    "environment_info",
]

#: The checkpoint format this version writes and the newest it reads.
FORMAT_VERSION = 1
#: Value of the checkpoint's ``kind`` field.
KIND = "ofactl.student"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
CALIBRATION_FILE = "calibration.json"

#: Human-readable names of the student's top-level components (others show their attribute name).
COMPONENT_LABELS: dict[str, str] = {
    "feature_extractor": "CNN feature extractor",
    "alpha_module": "alpha module",
    "encoder": "encoder (projection + pos. conv + transformer)",
    "heads": "prediction heads",
}

_TEACHER_HINT = "a HuBERT / wav2vec2 checkpoint is a teacher: pass it to `ofactl pretrain --teacher PATH`"


@dataclass
class Checkpoint:
    """The contents of one ``model.pt``.

    Attributes:
        path: the ``model.pt`` file read.
        format_version: the checkpoint format version (<= FORMAT_VERSION).
        config: the student config as a plain dict (``StudentConfig.from_dict`` input).
        state_dict: parameter and buffer tensors on CPU, by unwrapped key.
        training: free-form training state (empty for an untrained model).
        env: the environment the checkpoint was saved in.
    """

    path: Path
    format_version: int
    config: dict[str, Any]
    state_dict: dict[str, Tensor] = field(repr=False)
    training: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        """The model directory holding ``model.pt``."""
        return self.path.parent

    @property
    def calibration_file(self) -> Path | None:
        """``calibration.json`` next to the checkpoint, or None if the model is not calibrated."""
        candidate = self.directory / CALIBRATION_FILE
        return candidate if candidate.is_file() else None


# --------------------------------------------------------------------------- saving


def save_model(directory: str | os.PathLike[str], model: nn.Module, training: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as a model directory (created if needed).

    Writes ``config.yaml`` and then ``model.pt``, each atomically (temporary
    file in the same directory, fsync, ``os.replace``), so a crash leaves the
    previous files intact.  DDP / ``torch.compile`` wrappers are unwrapped.

    Args:
        directory: the model directory.
        model: an ``OFAStudent`` (anything with a dataclass ``.config``),
            possibly wrapped.
        training: plain data describing the training state (step,
            lambda_max, teacher, ...); ``Path`` values and dataclasses are
            converted to plain data.

    Returns:
        The model directory.

    Raises:
        TypeError: if the model has no dataclass ``config`` or ``training``
            holds something that is not plain data.
        OfactlError: if the directory cannot be written.
    """
    directory = Path(directory)
    inner = unwrap_model(model)
    config = getattr(inner, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"cannot save {type(inner).__name__}: it has no dataclass `.config` (expected an OFAStudent)")
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "config": _plain(config_dict, "config"),
        "state_dict": {key: value.detach().cpu() for key, value in unwrap_state_dict(inner.state_dict()).items()},
        "training": _plain(dict(training or {}), "training"),
        "env": _plain(environment_info(), "env"),
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OfactlError(f"cannot create model directory {directory}: {err.strerror or err}") from None

    header = "# Student config of this model (a copy for reading; model.pt holds the authoritative one).\n"
    _atomic_write(directory / CONFIG_FILE, lambda f: f.write((header + _to_yaml(payload["config"])).encode("utf-8")))
    _atomic_write(directory / MODEL_FILE, lambda f: torch.save(payload, f))
    return directory


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


def unwrap_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove wrapper prefixes from state-dict keys.

    Drops every ``_orig_mod`` key component (``torch.compile``, also on
    submodules) and a leading ``module.`` when every key has it (DDP).

    Raises:
        ValueError: if two keys become equal.
    """
    keys = {key: [part for part in key.split(".") if part != "_orig_mod"] for key in state_dict}
    while keys and all(len(parts) > 1 and parts[0] == "module" for parts in keys.values()):
        keys = {key: parts[1:] for key, parts in keys.items()}
    out: dict[str, Tensor] = {}
    for key, parts in keys.items():
        new_key = ".".join(parts)
        if new_key in out:
            raise ValueError(f"state dict keys collide after unwrapping: {new_key!r}")
        out[new_key] = state_dict[key]
    return out


def environment_info() -> dict[str, str]:
    """Versions, platform, host and time (ISO-8601 UTC) recorded in every checkpoint."""
    return {
        "ofactl_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint without building the model.

    Args:
        path: a model directory or a ``model.pt`` file.

    Raises:
        OfactlError: one line naming the file, if it is missing, empty,
            truncated, not a PyTorch file, not an ofactl model (a plain state
            dict, a HuBERT / wav2vec2 checkpoint, ...), or of a newer format.
    """
    file = _checkpoint_file(Path(path))
    obj = torch_load(file, kind="an ofactl model", hint="an ofactl model is a directory written by `ofactl pretrain`",
                     refused_hint=_teacher_hint)
    if not isinstance(obj, dict):
        raise OfactlError(f"{file} is not an ofactl model: it holds a {type(obj).__name__}, not a checkpoint dict")
    if obj.get("kind") != KIND:
        what, hint = _describe_foreign(obj)
        raise OfactlError(f"{file} is not an ofactl model: {what}", hint=hint)

    version = obj.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise OfactlError(f"{file} is a damaged ofactl checkpoint: format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise OfactlError(
            f"{file} has checkpoint format version {version}; this ofactl ({__version__}) reads up to version {FORMAT_VERSION}",
            hint="upgrade ofactl (pip install -U ofactl)",
        )
    for key in ("config", "state_dict"):
        if not isinstance(obj.get(key), dict):
            raise OfactlError(f"{file} is a damaged ofactl checkpoint: '{key}' is missing or not a dict")
    bad = [key for key, value in obj["state_dict"].items() if not isinstance(key, str) or not isinstance(value, Tensor)]
    if bad:
        raise OfactlError(f"{file} is a damaged ofactl checkpoint: state_dict entry {bad[0]!r} is not a tensor")
    training = obj.get("training") or {}
    env = obj.get("env") or {}
    if not isinstance(training, dict) or not isinstance(env, dict):
        raise OfactlError(f"{file} is a damaged ofactl checkpoint: 'training' and 'env' must be dicts")
    return Checkpoint(
        path=file,
        format_version=version,
        config=obj["config"],
        state_dict=obj["state_dict"],
        training=training,
        env=env,
    )


def load_student(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> OFAStudent:
    """Load a model directory (or its ``model.pt``) as an ``OFAStudent`` in eval mode.

    The checkpoint, without its state dict, is attached as ``model.checkpoint``.

    Raises:
        OfactlError: if the checkpoint cannot be read (see :func:`read_checkpoint`),
            its config is invalid, its weights do not match the config, or the
            device is not available.
    """
    from ofactl.model import OFAStudent, StudentConfig

    ckpt = read_checkpoint(path)
    try:
        config = StudentConfig.from_dict(dict(ckpt.config))
    except OfactlError as err:
        raise OfactlError(f"{ckpt.path}: {err.message}", hint=err.hint) from None
    except (TypeError, ValueError) as err:
        raise OfactlError(f"{ckpt.path}: invalid student config: {first_line(err)}") from None
    model = OFAStudent(config)
    _check_weights_match(model, ckpt)
    model.load_state_dict(ckpt.state_dict, strict=True)
    try:
        model.to(device)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise OfactlError(f"cannot move the model to device '{device}': {first_line(err)}", hint="use --device cpu") from None
    model.eval()
    model.checkpoint = dataclasses.replace(ckpt, state_dict={})
    return model


def model_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a model's ``model.pt``; ``path`` is the directory or the file."""
    file = _checkpoint_file(Path(path))
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything ``ofactl info`` shows, as plain (JSON-serialisable) data.

    Keys: ``model_dir``, ``checkpoint`` (file, size, sha256, format version),
    ``config``, ``parameters`` (``total`` and ``by_component``, counted from
    the model's named children), ``training`` (``trained`` flag, ``status``
    and the stored ``state``), ``environment``, ``calibration``
    (``calibrated``, ``status``, ``file`` and the file's top-level scalar
    entries as ``summary``).

    Raises:
        OfactlError: if the model cannot be loaded.
    """
    model = load_student(path)
    ckpt: Checkpoint = model.checkpoint
    by_component = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    total = sum(p.numel() for p in model.parameters())
    other = total - sum(by_component.values())
    if other:
        by_component["other"] = other
    trained = bool(ckpt.training)
    return {
        "model_dir": str(ckpt.directory),
        "checkpoint": {
            "file": str(ckpt.path),
            "size_bytes": ckpt.path.stat().st_size,
            "sha256": model_sha256(ckpt.path),
            "format_version": ckpt.format_version,
        },
        "config": _jsonable(ckpt.config),
        "parameters": {"total": total, "by_component": by_component},
        "training": {
            "trained": trained,
            "status": "trained" if trained else "untrained (random init)",
            "state": _jsonable(ckpt.training),
        },
        "environment": _jsonable(ckpt.env),
        "calibration": _describe_calibration(ckpt.directory / CALIBRATION_FILE),
    }


# --------------------------------------------------------------------------- internals


def _checkpoint_file(path: Path) -> Path:
    """The ``model.pt`` for a directory or file path, checked to exist."""
    if path.is_dir():
        file = path / MODEL_FILE
        if not file.is_file():
            raise OfactlError(
                f"{path} is not an ofactl model directory: it has no {MODEL_FILE}",
                hint="a model directory is written by `ofactl pretrain`",
            )
        return file
    if not path.exists():
        raise OfactlError(f"model {path} does not exist", hint="check the path, or run `ofactl pretrain` to create a model")
    return path


def _teacher_hint(what: str) -> str | None:
    """A file of fairseq/argparse objects is a teacher checkpoint given where a student was expected."""
    return _TEACHER_HINT if any(marker in what for marker in ("fairseq", "argparse", "omegaconf")) else None


def _describe_foreign(obj: dict[Any, Any]) -> tuple[str, str | None]:
    """Say what a dict that is not an ofactl checkpoint looks like, plus a hint."""
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.startswith("ofactl."):
        return f"it is an '{kind}' file, not a student model", None
    keys = [str(key) for key in obj]
    for nested in ("model", "state_dict", "model_state_dict", "module", "weights"):
        if isinstance(obj.get(nested), dict):
            keys += [str(key) for key in obj[nested]]
    teacher_markers = ("mask_emb", "label_embs_concat", "w2v_encoder", "feature_extractor.conv_layers", "encoder.transformer.layers", "encoder.layers.")
    looks_student = any(key.startswith("alpha_module.") for key in keys)
    looks_teacher = (
        any(key.startswith(("hubert.", "wav2vec2.")) or any(m in key for m in teacher_markers) for key in keys)
        or {"cfg", "model"} <= set(obj)
        or {"args", "model"} <= set(obj)
    )
    is_state_dict = bool(obj) and all(isinstance(value, Tensor) for value in obj.values())
    shape = f"a plain state dict ({len(obj)} tensors)" if is_state_dict else f"a dict with keys {_key_list(obj)}"
    if looks_student:
        return f"{shape} of a student saved without its config", "save models with ofactl.checkpoint.save_model(directory, model)"
    if looks_teacher:
        return f"{shape} that looks like a HuBERT / wav2vec2 checkpoint", _TEACHER_HINT
    return shape, "an ofactl model is a directory written by `ofactl pretrain`"


def _key_list(obj: dict[Any, Any], limit: int = 5) -> str:
    keys = [repr(key) for key in list(obj)[:limit]]
    more = f", ... ({len(obj)} in all)" if len(obj) > limit else ""
    return ", ".join(keys) + more if keys else "(none)"


def _check_weights_match(model: nn.Module, ckpt: Checkpoint) -> None:
    """One clear line if the stored weights do not fit the model built from the config."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in ckpt.state_dict.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(key for key in set(expected) & set(found) if expected[key] != found[key])
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if mismatched:
        key = mismatched[0]
        parts.append(f"{len(mismatched)} with another shape (e.g. {key}: stored {list(found[key])}, config wants {list(expected[key])})")
    raise OfactlError(
        f"{ckpt.path}: the stored weights do not match the stored config: {'; '.join(parts)}",
        hint="the checkpoint was edited or written by an incompatible ofactl version",
    )


def _describe_calibration(file: Path) -> dict[str, Any]:
    """Calibration status read generically from calibration.json's top-level keys."""
    if not file.is_file():
        return {"calibrated": False, "file": None, "status": "not calibrated: run `ofactl calibrate DATA`", "summary": {}}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return {"calibrated": False, "file": str(file), "status": f"calibration.json is unreadable ({first_line(err)}): re-run `ofactl calibrate DATA`", "summary": {}}
    if not isinstance(data, dict):
        return {"calibrated": False, "file": str(file), "status": "calibration.json is not a JSON object: re-run `ofactl calibrate DATA`", "summary": {}}

    def short(value: Any) -> bool:
        scalar = (str, int, float, bool, type(None))
        return isinstance(value, scalar) or (isinstance(value, list) and len(value) <= 4 and all(isinstance(v, scalar) for v in value))

    summary = {key: value for key, value in data.items() if short(value)}
    ranges = [f"{key} {_format_value(value)}" for key, value in summary.items() if "lambda" in key.lower() or "period" in key.lower()]
    status = "calibrated" + (f": {' / '.join(ranges)}" if ranges else "")
    return {"calibrated": True, "file": str(file), "status": status, "summary": summary}


def _format_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` accepts."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):  # str subclasses (e.g. torch's TorchVersion) are not weights_only-safe
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Tensor):
        if value.numel() == 1:
            return value.item()
        raise TypeError(f"{where} holds a tensor of shape {tuple(value.shape)}; only plain data can be stored there")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str keys")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"{where} holds a {type(value).__name__}; only plain data (dict, list, str, numbers, bool, None) can be stored")


def _jsonable(value: Any) -> Any:
    """Tuples as lists, everything else as is (the input is already plain data)."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _to_yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(_jsonable(config), sort_keys=False, default_flow_style=None)
