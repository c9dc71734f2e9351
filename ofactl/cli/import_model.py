"""``ofactl import CKPT --out DIR``: an s3prl DistilHuBERT checkpoint as an ofactl model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ofactl.cli import precheck
from ofactl.cli.app import app


@app.command("import")
def import_command(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="A DistilHuBERT checkpoint saved by s3prl's "
                                                                   "distiller (keys Distiller and Config).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Model directory to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the new alpha module's initialisation.")] = 0,
) -> None:
    """Import an s3prl DistilHuBERT checkpoint (its alpha module starts fresh: OFA-pretrain it next)."""
    precheck.existing(checkpoint, "checkpoint", hint="give the .ckpt file s3prl's distiller pretraining saved")
    precheck.output_file(out / "model.pt", flag="--out")
    from ofactl.s3prl_import import import_distilhubert

    directory = import_distilhubert(checkpoint, out, seed=seed)
    typer.echo(f"{directory}: DistilHuBERT from {checkpoint}; alpha module freshly initialised (seed {seed}), so "
               "it is DistilHuBERT at lambda 0 only")
    typer.echo(f"next: ofactl pretrain --init-student {directory} ... (OFA pretraining from these weights)")
