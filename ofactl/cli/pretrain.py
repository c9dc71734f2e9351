"""``ofactl pretrain``: OFA pretraining of a DistilHuBERT+CIF student."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ofactl.cli.app import app
from ofactl.cli.options import QuietOption


@app.command()
def pretrain(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", metavar="FILE",
                                                   help="YAML config (strict: unknown keys are errors).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", metavar="DIR", help="Training corpus (overrides data.path).")] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", metavar="SPEC",
                                                   help="Teacher checkpoint, HF directory or tiny-random.")] = None,
    init_student: Annotated[Optional[str], typer.Option(
        "--init-student", metavar="PATH", show_default=False,
        help="Start from these student weights: an ofactl model directory or an s3prl DistilHuBERT checkpoint "
             "(instead of the teacher's layers).")] = None,
    segments: Annotated[Optional[str], typer.Option("--segments", metavar="FILE",
                                                    help="Guidance segments from `ofactl segment`.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", metavar="DIR", help="Model directory to write.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Optimiser steps (overrides steps).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", show_default=False,
        help="Override a config key (dotted for nested, e.g. optim.lr=5e-4; the value is read as YAML). "
             "Repeatable.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", metavar="P", show_default=False,
        help="auto, fp32 or bf16 (overrides the config's precision; auto: bf16 where the device has fast bf16).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Pretrain one OFA student: one lambda ~ U[0, lambda_max] per step (runs under torchrun too)."""
    from ofactl.config import parse_assignments
    from ofactl.pretrain_config import load_pretrain_config

    # the config and the paths it names are checked before torch is imported (seconds on a loaded machine)
    assignments = parse_assignments(set_ or [], option="--set")  # `--set segments=null` clears segments
    options = {"data.path": data, "teacher": teacher, "segments": segments, "out": out, "steps": max_steps,
               "precision": precision, "init_student": init_student}
    cfg = load_pretrain_config(config, assignments, **options)
    cfg.check_inputs()
    from ofactl.train import pretrain as run_pretrain

    from ofactl.progress import ProgressLine

    main_rank = int(os.environ.get("RANK", "0")) == 0
    with ProgressLine("pretrain", enabled=not quiet and main_rank) as bar:
        result = run_pretrain(cfg, resume=resume, progress=bar.update)
    if not main_rank:  # under torchrun only rank 0 reports
        return
    if result.started_fresh:
        typer.echo(f"warning: {result.model_dir} had no checkpoint to resume (stopped before its first one): "
                   "started afresh", err=True)
    status = "finished" if result.finished else f"stopped by {result.interrupted_by} (resume with --resume)"
    losses = ", ".join(f"{k} {result.last_losses[k]:.4f}" for k in ("loss", "distill", "guidance_seg", "guidance_frame")
                       if k in result.last_losses)
    typer.echo(f"{result.model_dir}: step {result.step} {status} in {result.seconds:.0f} s; {losses}")
    if result.problems:
        typer.echo(f"{len(result.problems)} input(s) left out: run `ofactl data inspect` on the data for details")
    if result.finished and result.recorded_default:
        typer.echo(f"recorded as the workspace model; next: ofactl calibrate DATA --model {result.model_dir}")
    elif result.finished:
        typer.echo(f"the workspace model stays {result.kept_default}; make this one the default with "
                   f"`ofactl use {result.model_dir}`; next: ofactl calibrate DATA --model {result.model_dir}")
    elif result.interrupted_by:
        # a scheduler must not read a preempted run as a success: 128 + the signal, as a shell reports it
        raise typer.Exit(128 + _signal_number(result.interrupted_by))


def _signal_number(name: str) -> int:
    """SIGINT -> 2, SIGTERM -> 15; a stop asked by another torchrun rank counts as SIGTERM."""
    import signal

    try:
        return int(signal.Signals[name])
    except KeyError:
        return int(signal.SIGTERM)
