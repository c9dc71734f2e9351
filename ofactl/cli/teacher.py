"""``ofactl teacher train`` and ``ofactl teacher info``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from ofactl.cli import precheck
from ofactl.cli.app import app
from ofactl.cli.options import LayoutOption
from ofactl.cli.options import JsonOption, PrecisionOption, QuietOption
from ofactl.progress import ProgressLine

teacher_app = typer.Typer(help="Teachers: train the small demo teacher, describe a teacher checkpoint.",
                          no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="Corpus with phone labels (e.g. the synthetic LibriSpeech).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for teacher.pth and its files.")],
    split: Annotated[str, typer.Option("--split", "-s", help="Training split.")] = "train-clean-100",
    dev_split: Annotated[str, typer.Option("--dev-split", help="Split for the reported phone error rate "
                                                                "('' for none).")] = "dev-clean",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 1200,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 5e-3,
    speaker_weight: Annotated[float, typer.Option("--speaker-weight", min=0.0,
                                                  help="Weight of the speaker loss (0: phones only).")] = 0.5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    layout: LayoutOption = None,
    precision: PrecisionOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Train a small HuBERT-shaped teacher (phone CTC + speaker head) for demos without a real HuBERT."""
    precheck.existing(data, "corpus", hint="check the path of the corpus with phone labels")
    precheck.precision(precision)
    from ofactl.teacher_train import train_teacher

    kwargs = dict(split=split, dev_split=dev_split or None, layout=layout, steps=steps, lr=lr,
                  speaker_weight=speaker_weight, seed=seed, precision=precision)
    with ProgressLine("training the teacher", enabled=not quiet) as bar:
        result = train_teacher(data, out, progress=bar.update, **kwargs)
    per = "n/a" if math.isnan(result.dev_per) else f"{result.dev_per:.3f}"
    typer.echo(f"{result.path}: {result.steps} steps in {result.seconds:.0f} s on {result.train_utterances} "
               f"utterances of {result.train_speakers} speakers; phone CTC loss "
               f"{result.first_loss.get('ctc', float('nan')):.2f} -> {result.last_loss.get('ctc', float('nan')):.2f}, "
               f"dev PER {per} ({result.dev_utterances} utterances)")
    if result.problems:
        from ofactl.cli.problems import report_skipped

        report_skipped(result.problems)


@teacher_app.command("info")
def info_command(
    spec: Annotated[str, typer.Argument(metavar="SPEC", help="Teacher file, Hugging Face folder or tiny-random[:SEED].")],
    json_output: JsonOption = False,
) -> None:
    """The teacher's sizes and parameter count (any format --teacher accepts)."""
    from ofactl.teacher import load_teacher

    teacher = load_teacher(spec)
    info = {"spec": spec, "parameters": sum(p.numel() for p in teacher.parameters()),
            "hop_ms": teacher.hop_samples / 16.0, **teacher.config.to_dict()}
    side = Path(f"{spec}").with_name("teacher.info.json")
    if side.is_file():
        info["training"] = json.loads(side.read_text(encoding="utf-8"))
    if json_output:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key != "training":
            typer.echo(f"{key:18} {value}")
    if "training" in info:
        t = info["training"]
        typer.echo(f"{'trained':18} {t.get('trained_by')}, {t.get('steps')} steps, dev PER {t.get('dev_per')}")
