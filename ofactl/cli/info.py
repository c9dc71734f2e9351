"""``ofactl info``: a model's config, parameters, training state and calibration."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ofactl.cli.app import app
from ofactl.cli.options import JsonOption, ModelOption
from ofactl.errors import OfactlError


@app.command()
def info(
    model: Annotated[
        Optional[str],
        typer.Argument(metavar="MODEL", show_default=False, help="Model directory (default: as for --model)."),
    ] = None,
    model_option: ModelOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a model: config, parameter counts, training state, environment, calibration."""
    from ofactl.workspace import resolve_model

    if model is not None and model_option is not None and model != model_option:
        raise OfactlError(f"two models given: MODEL {model!r} and --model {model_option!r}", hint="give only one of them")
    path = resolve_model(model if model is not None else model_option, flag="MODEL" if model is not None else "--model")

    from ofactl.checkpoint import describe_model  # imports torch: only once a model was found

    description = describe_model(path)
    if json_output:
        typer.echo(json.dumps(description, indent=2))
    else:
        _render_info(description, Console(soft_wrap=True))


# ----------------------------------------------------------------------------- rendering


def _render_info(description: dict[str, Any], console: Console) -> None:
    """Print :func:`ofactl.checkpoint.describe_model`'s dict as rich tables."""
    from ofactl.checkpoint import COMPONENT_LABELS  # cheap once describe_model has run

    checkpoint = description["checkpoint"]
    console.print(f"[bold]model:[/] {escape(description['model_dir'])}")
    console.print(
        f"  {escape(checkpoint['file'])}  {_format_bytes(checkpoint['size_bytes'])}  "
        f"sha256 {checkpoint['sha256'][:16]}  format v{checkpoint['format_version']}",
        highlight=False,
    )

    config = Table(title="config", title_justify="left", show_header=False, box=None, padding=(0, 2))
    for key, value in description["config"].items():
        config.add_row(key, escape(_format_config_value(value)))
    console.print(config)

    parameters = description["parameters"]
    total = parameters["total"]
    counts = Table(title="parameters", title_justify="left", box=None, padding=(0, 2))
    counts.add_column("component")
    counts.add_column("parameters", justify="right")
    counts.add_column("share", justify="right")
    for name, count in parameters["by_component"].items():
        share = f"{100.0 * count / total:.1f}%" if total else "-"
        counts.add_row(COMPONENT_LABELS.get(name, name), f"{count:,} ({_format_count(count)})", share)
    counts.add_row("[bold]total[/]", f"[bold]{total:,} ({_format_count(total)})[/]", "100.0%" if total else "-")
    console.print(counts)

    training = description["training"]
    console.print(f"[bold]training:[/] {escape(training['status'])}")
    if training["state"]:
        console.print(_key_value_table(training["state"]))

    console.print("[bold]saved with:[/]")
    console.print(_key_value_table(description["environment"]))

    calibration = description["calibration"]
    style = "green" if calibration["calibrated"] else "yellow"
    console.print(f"[bold]calibration:[/] [{style}]{escape(calibration['status'])}[/]")
    if calibration["summary"]:
        console.print(_key_value_table(calibration["summary"]))


def _key_value_table(mapping: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a long value (a hash, a path) wraps; it is never cut to "5a43…"
    for key, value in mapping.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
        table.add_row(f"  {escape(str(key))}", escape(text))
    return table


def _format_config_value(value: Any) -> str:
    """Compact text for a config value; runs of equal list items as ``item x n``."""
    if not isinstance(value, list) or not value or not isinstance(value[0], list):
        return json.dumps(value) if not isinstance(value, str) else value
    parts: list[str] = []
    index = 0
    while index < len(value):
        run = 1
        while index + run < len(value) and value[index + run] == value[index]:
            run += 1
        item = "(" + ", ".join(str(v) for v in value[index]) + ")"
        parts.append(item if run == 1 else f"{item} x {run}")
        index += run
    return " + ".join(parts)


def _format_count(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 1_000:
        return f"{count / 1e3:.1f}K"
    return str(count)


def _format_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # unreachable


