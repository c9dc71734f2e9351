"""Teacher checkpoint formats: torchaudio state dicts, fairseq checkpoints and Hugging Face folders.

The package: :mod:`~.common` (safe loading, layouts, weight norm, :func:`load_state`),
:mod:`~.torchaudio_dicts`, :mod:`~.fairseq`, :mod:`~.huggingface`, and :mod:`~.detect`
(:func:`read_checkpoint_file`: which kind a file is).

Each reader returns ``(TeacherConfig, state dict under torchaudio's names)``;
:func:`load_state` loads it into a :class:`~ofactl.teacher.Teacher` with
one-line errors.  Files are read with ``torch.load(weights_only=True)`` (or
safetensors); fairseq's conv layer string is parsed, never evaluated
(:func:`parse_conv_layers`).  The fairseq key map and the weight-norm helpers
are shared with the s3prl importer (``ofactl.s3prl_import``).
"""

from __future__ import annotations

from ofactl.teacher_formats.common import load_state
from ofactl.teacher_formats.detect import read_checkpoint_file
from ofactl.teacher_formats.fairseq import parse_conv_layers
from ofactl.teacher_formats.huggingface import read_huggingface_dir

__all__ = ["load_state", "parse_conv_layers", "read_checkpoint_file", "read_huggingface_dir"]
