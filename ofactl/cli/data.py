"""``ofactl data inspect`` and ``ofactl data synth``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ofactl.cli.app import app
from ofactl.cli.options import IdFromOption, JsonOption, LayoutOption, QuietOption
from ofactl.progress import ProgressLine

data_app = typer.Typer(help="Corpora: inspect a dataset, synthesise the demo corpus.", no_args_is_help=True)
app.add_typer(data_app, name="data")

@data_app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Dataset folder (or a manifest .tsv/.csv).")],
    layout: LayoutOption = None,
    id_from: IdFromOption = None,
    deep: Annotated[bool, typer.Option("--deep", help="Decode every file to find silence and NaN samples.")] = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Layout, utterances and hours per split, label counts, and every problem found."""
    from ofactl.cli.inspect_report import render
    from ofactl.data.inspect import inspect_corpus

    options = {"id_from": id_from} if id_from is not None else {}
    with ProgressLine("reading headers", enabled=not (quiet or json_output)) as bar:
        report = inspect_corpus(path, layout, deep=deep, progress=bar.update, **options)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render(report, Console(soft_wrap=True))


@data_app.command("synth")
def synth_command(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Where to write the corpus layouts.")],
    speakers: Annotated[int, typer.Option("--speakers", min=2, help="Number of synthetic voices.")] = 8,
    utterances: Annotated[int, typer.Option("--utterances", min=6, help="LibriSpeech-layout utterances.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a corpus made with other arguments.")] = False,
    held_out_speakers: Annotated[Optional[int], typer.Option(
        "--held-out-speakers", metavar="N", show_default=False,
        help="Speakers for dev and for test, each (default: a tenth of --speakers).")] = None,
    dev_utterances: Annotated[Optional[int], typer.Option(
        "--dev-utterances", metavar="N", show_default=False,
        help="At least N dev utterances per task layout (LibriSpeech, Speech Commands, VoxCeleb1, Fluent).")] = None,
    test_utterances: Annotated[Optional[int], typer.Option(
        "--test-utterances", metavar="N", show_default=False,
        help="At least N test utterances per task layout (narrow confidence intervals).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Synthesise English speech (espeak-ng) in LibriSpeech, Speech Commands, VoxCeleb1 and Fluent layouts."""
    from ofactl.testing.synth import synthesize_corpus

    kwargs = dict(speakers=speakers, utterances=utterances, seed=seed, overwrite=overwrite,
                  held_out_speakers=held_out_speakers, dev_utterances=dev_utterances, test_utterances=test_utterances)
    with ProgressLine("synthesising", enabled=not quiet) as bar:
        report = synthesize_corpus(out_dir, progress=bar.update, **kwargs)
    what = "already there" if report.reused else f"written in {report.seconds:.1f} s"
    typer.echo(f"{report.n_files} files, {report.total_hours:.3f} h of speech in {out_dir} ({what})")
    for name, count in report.counts.items():
        typer.echo(f"  {name}: {count}")
