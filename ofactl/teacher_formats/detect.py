"""Which kind of teacher checkpoint a file is, and its reader."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from torch import Tensor

from ofactl.errors import OfactlError
from ofactl.teacher import _SPEC_HINT, TeacherConfig
from ofactl.teacher_formats.common import (
    _flat_layout,
    _is_tensor_dict,
    _read_weights_file,
)
from ofactl.teacher_formats.fairseq import _convert_fairseq
from ofactl.teacher_formats.huggingface import read_huggingface_dir
from ofactl.teacher_formats.torchaudio_dicts import _convert_torchaudio


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
