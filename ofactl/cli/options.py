"""Options shared by ofactl commands, defined once as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ofactl.period import FramePeriod, parse_period_option

ModelOption = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        metavar="DIR",
        show_default=False,
        help="Model directory (default: $OFACTL_MODEL, then `model` in ofactl.toml).",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; print only results and errors.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
PeriodOption = Annotated[
    Optional[FramePeriod],
    typer.Option(
        "--period",
        "-p",
        parser=parse_period_option,
        metavar="PERIOD",
        show_default=False,
        help="Target frame period with a unit, e.g. 90ms or 0.09s.",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", metavar="DEVICE", help="torch device, e.g. cpu or cuda:0.")]

PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        metavar="P",
        help="auto (bf16 where the device has fast bf16: CUDA with bf16, CPUs with AMX or AVX512-BF16; else fp32), "
             "fp32 or bf16. Frame counts are decided in fp32 either way.",
    ),
]
