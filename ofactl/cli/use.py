"""``ofactl use DIR``: make a model directory the workspace's default model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ofactl.cli.app import app


@app.command()
def use(model: Annotated[Path, typer.Argument(metavar="DIR", help="A model directory (written by pretrain).")]) -> None:
    """Record DIR as the default model in ofactl.toml (here or in the enclosing workspace)."""
    from ofactl.workspace import model_directory, set_default_model

    directory = model_directory(model, source="argument")
    written = set_default_model(directory)
    typer.echo(f"default model: {directory} (in {written})")
