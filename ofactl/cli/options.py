"""Options shared by ofactl commands, defined once as ``Annotated`` aliases.

An option that means the same thing in several commands lives here; one that
only one command has (or that means something else there, such as ``--out``
or ``segment``'s teacher ``--layer``) stays with its command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ofactl.period import FramePeriod, parse_period_option
from ofactl.task_names import TASK_NAMES

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

LambdaOption = Annotated[Optional[float], typer.Option("--lambda", metavar="L", show_default=False,
                                                       help="Use this lambda in [0, 2) instead of a period.")]

# --- corpora
LayoutOption = Annotated[
    Optional[str],
    typer.Option("--layout", "-l", metavar="LAYOUT", show_default=False,
                 help="generic, librispeech, speech_commands, voxceleb1, fluent, iemocap, quesst14, snips, "
                      "covost2, lhotse (default: detect)."),
]
SplitOption = Annotated[Optional[str], typer.Option("--split", "-s", metavar="SPLIT", show_default=False,
                                                    help="Use only this split of the corpus.")]
IdFromOption = Annotated[Optional[str], typer.Option(
    "--id-from", metavar="KIND", show_default=False,
    help="stem (default) or relpath: utterance ids of a folder of audio files.")]

# --- probes and sweeps (the task names come from the registry)
TaskOption = Annotated[str, typer.Option("--task", "-t", metavar="TASK", show_default=False,
                                         help=f"Downstream task: {', '.join(TASK_NAMES)}.")]
DataOption = Annotated[Optional[Path], typer.Option(
    "--data", "-d", metavar="DIR", show_default=False,
    help="The task's dataset (default: `\\[data] <task>` in ofactl.toml).")]
ResultsOption = Annotated[Optional[Path], typer.Option(
    "--results", "-r", metavar="FILE", show_default=False,
    help="Results table to append to (default: the workspace's, else ./results.csv).")]
LayerOption = Annotated[str, typer.Option("--layer", help="last, weighted (SUPERB's learned weighted sum of every "
                                                         "layer), or a layer number (0 = transformer input).")]
FeaturesOption = Annotated[Optional[Path], typer.Option(
    "--features-dir", metavar="DIR", show_default=False,
    help="Where extracted features are cached (default: features/ next to the results file).")]
EpochsOption = Annotated[int, typer.Option("--max-epochs", min=1, help="Upper bound on training epochs.")]
PoolingOption = Annotated[str, typer.Option(
    "--pooling", metavar="KIND",
    help="cif (the model at the period's lambda); baselines: avg (its 20 ms output features average-pooled to the "
         "period) or uniform (the CNN frames pooled to fixed lengths inside the model: same compute as cif).")]
PatienceOption = Annotated[int, typer.Option("--patience", min=1, help="Stop after this many epochs without a better dev score.")]
SeedOption = Annotated[int, typer.Option("--seed", help="First seed of head initialisation and batch order.")]
SeedsOption = Annotated[int, typer.Option(
    "--seeds", min=1, metavar="N",
    help="Probe-training seeds per point (--seed, --seed + 1, ...); plots show their mean and pooled interval.")]
