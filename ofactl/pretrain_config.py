"""The pretraining configuration: dataclasses read strictly from YAML, and ``--set`` overrides.

Kept free of torch so that ``ofactl pretrain`` reports a missing or invalid
config at once, before the seconds it takes to import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofactl.config import from_dict
from ofactl.errors import OfactlError
from ofactl.period import check_lambda

__all__ = ["DataConfig", "OptimConfig", "PretrainConfig", "load_pretrain_config"]


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and linear decay (DistilHuBERT's settings by default)."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_ratio: float = 0.07
    grad_clip: float = 5.0


@dataclass
class DataConfig:
    """Where the audio comes from and how it is batched."""

    path: str = ""
    layout: str | None = None
    splits: list[str] = field(default_factory=list)  # empty: every split named train*, else all
    crop_s: float = 15.625  # 250,000 samples
    max_batch_s: float = 375.0  # padded seconds: 24 x 15.6 s
    max_batch_size: int | None = 24
    min_duration_s: float = 0.5
    num_workers: int = 4


@dataclass
class PretrainConfig:
    """Everything ``ofactl pretrain`` needs; read strictly from YAML."""

    out: str = "exp/ofa/model"
    student: str = "distilhubert"  # preset name
    student_overrides: dict[str, Any] = field(default_factory=dict)
    teacher: str = ""
    init_from_teacher: bool = True
    #: start from these student weights instead: an ofactl model directory, or an s3prl DistilHuBERT checkpoint
    #: (its architecture replaces ``student``; ``student_overrides`` still apply; the alpha module starts fresh)
    init_student: str | None = None
    segments: str | None = None
    lambda_max: float = 2.0 - 1e-5
    fixed_lambda: float | None = None
    steps: int = 200_000
    accumulate: int = 1
    w_seg: float = 0.05
    w_frame: float = 0.5
    precision: str = "auto"  # auto (bf16 where the device has fast bf16, see ofactl.precision) | bf16 | fp32
    #: the frozen teacher's forward: fp32 (the method's reference), or bf16/auto as for ``precision`` (its targets
    #: then agree with fp32's to a cosine of about 0.9999, and a step costs much less: the teacher is most of it)
    teacher_precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    save_every: int = 1000
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        problems = []
        for name, value in (("lambda_max", self.lambda_max), ("fixed_lambda", self.fixed_lambda)):
            try:
                if value is not None:
                    check_lambda(value, name)
            except OfactlError as err:
                problems.append(err.message)
        if self.steps < 1 or self.accumulate < 1 or self.save_every < 1:
            problems.append("steps, accumulate and save_every must be >= 1")
        for name, value in (("precision", self.precision), ("teacher_precision", self.teacher_precision)):
            if value not in ("auto", "bf16", "fp32"):
                problems.append(f"{name} must be auto, bf16 or fp32, found {value!r}")
        if problems:
            raise OfactlError("invalid pretrain config: " + "; ".join(problems))

    def check_inputs(self) -> None:
        """One line if the teacher, the corpus or the segments named are missing (relative paths: from the
        current directory); cheap, so ``ofactl pretrain`` calls it before importing torch."""
        if not self.teacher:
            raise OfactlError("no teacher given", hint="set teacher in the config or pass --teacher SPEC")
        if not self.teacher.startswith("tiny-random") and not Path(self.teacher).exists():
            raise OfactlError(f"teacher {self.teacher}: no such file or folder",
                              hint="pass --teacher with a HuBERT/wav2vec2 checkpoint or Hugging Face folder")
        if not self.data.path:
            raise OfactlError("no training data given", hint="set data.path in the config or pass --data DIR")
        if not Path(self.data.path).exists():
            raise OfactlError(f"training corpus {self.data.path}: no such file or folder",
                              hint="pass --data DIR or set data.path in the config")
        if self.init_student and not Path(self.init_student).exists():
            raise OfactlError(f"--init-student {self.init_student}: no such file or folder",
                              hint="an ofactl model directory or an s3prl DistilHuBERT checkpoint")
        if self.segments and not Path(self.segments).exists():
            raise OfactlError(f"segments file {self.segments}: no such file",
                              hint="write one with `ofactl segment`, or drop it with --set segments=null")


def load_pretrain_config(path: str | Path | None, assignments: dict[str, Any] | None = None,
                         **overrides: Any) -> PretrainConfig:
    """The YAML at ``path`` (or the defaults), then ``assignments`` as given (``--set KEY=VALUE``: a None value,
    ``--set segments=null``, clears the key), then the non-None ``overrides`` (options left unset are None).
    Keys are dotted for nested fields (``data.path``)."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise OfactlError(f"config file {p} not found", hint="pass --config with an existing YAML file")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise OfactlError(f"{p}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(data, dict):
            raise OfactlError(f"{p}: expected a mapping at the top level")
    given = list((assignments or {}).items()) + [(k, v) for k, v in overrides.items() if v is not None]
    for key, value in given:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return from_dict(PretrainConfig, data, where=str(path) if path else "pretrain config")
