"""``ofactl profile`` (compute per frame period) and ``ofactl plot`` (trade-off figures and tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ofactl.cli import precheck
from ofactl.cli.app import app
from ofactl.progress import ProgressLine
from ofactl.cli.options import DeviceOption, JsonOption, ModelOption, PrecisionOption, QuietOption

ListOption = Optional[list[str]]


def _console() -> Console:
    """stdout; wide when it is not a terminal, so piped tables are not squeezed to 80 columns."""
    import sys

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _warn_line(message: str) -> None:
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[yellow]warning:[/] {message}", markup=True)


@app.command()
def profile(
    model: ModelOption = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME", show_default=False,
                                                  help="Profile a random tiny or distilhubert student instead of a model.")] = None,
    periods: Annotated[str, typer.Option("--periods", metavar="P,P,...",
                                         help="Target frame periods with units.")] = "20ms,40ms,90ms,160ms,320ms,960ms",
    seconds: Annotated[float, typer.Option("--seconds", min=0.05, help="Seconds of random audio per utterance.")] = 10.0,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    results: Annotated[Optional[Path], typer.Option("--results", metavar="FILE", show_default=False,
                                                    help="Append macs_per_s and throughput rows to this results table.")] = None,
    throughput: Annotated[bool, typer.Option("--throughput/--no-throughput",
                                             help="Also time forwards at batch 1 and 8.")] = True,
    min_time: Annotated[float, typer.Option("--min-time", metavar="S", min=0.0,
                                            help="Time each throughput measurement for at least S seconds.")] = 1.0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """MACs per second of audio by component, and throughput, at each frame period."""
    import json

    precheck.precision(precision)
    if preset is None:
        model = precheck.model(model)  # before torch: a wrong path is reported at once
    from ofactl.profile import profile_model, reduction_lines, render_profile

    if preset is None:
        from ofactl import load_model

        model = load_model(model, device=device, precision=precision)
    kwargs = dict(preset=preset, periods=periods, duration_s=seconds, device=device, throughput=throughput,
                  precision=precision,
                  min_time_s=min_time)
    with ProgressLine("profiling", enabled=not (quiet or json_output)) as bar:
        prof = profile_model(model, progress=bar.update, **kwargs)
    if results is not None:
        from ofactl.results import append_rows

        n = append_rows(results, prof.to_results())
    if json_output:
        typer.echo(json.dumps(prof.to_dict(), indent=1))
        return
    console = _console()
    console.print(render_profile(prof))
    for line in reduction_lines(prof):
        console.print(line, highlight=False)
    if results is not None:
        console.print(f"appended {n} rows to {results}", highlight=False)


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="The results table (CSV).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FIG", show_default=False,
                                                   help="Figure to write (.png, .pdf or .svg; default RESULTS.png).")] = None,
    tasks: Annotated[ListOption, typer.Option("--tasks", metavar="T,T", show_default=False,
                                              help="Tasks to draw (default: all but profile).")] = None,
    x: Annotated[str, typer.Option("--x", metavar="period|macs", help="x axis: frame period or compute.")] = "period",
    models: Annotated[ListOption, typer.Option("--models", metavar="M,M", show_default=False,
                                               help="Models to draw (default: all).")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="Highlight the Pareto frontier of each panel.")] = False,
    table: Annotated[bool, typer.Option("--table", help="Print the model x period tables instead of drawing.")] = False,
    split: Annotated[str, typer.Option("--split", metavar="SPLIT", help="Split of the probe tasks.")] = "test",
    log_x: Annotated[Optional[bool], typer.Option("--log-x/--linear-x", show_default=False,
                                                  help="Force the x scale (default: log for KS, IC, SID, ER).")] = None,
) -> None:
    """Trade-off figure: each task's metric against frame period (or MACs), one line per model."""
    from ofactl.plot import check_figure_path, pivot_results, plot_results, render_pivot, save_figure

    if table:
        tables = pivot_results(results, tasks=tasks, models=models, split=split, warn=_warn_line)
        console = _console()
        for rendered in render_pivot(tables):
            console.print(rendered)
        return
    out = check_figure_path(output if output is not None else results.with_suffix(".png"))
    fig = plot_results(results, tasks=tasks, models=models, x=x, pareto=pareto, split=split, log_x=log_x,
                       warn=_warn_line)
    save_figure(fig, out)
    titles = [ax.get_title() for ax in fig.axes]
    typer.echo(f"wrote {out} ({len(titles)} panel{'s' if len(titles) != 1 else ''}: {'; '.join(titles)})")
