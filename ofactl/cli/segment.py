"""``ofactl segment``: guidance segments for pretraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ofactl.cli import precheck
from ofactl.cli.app import app
from ofactl.cli.options import LayoutOption
from ofactl.cli.options import DeviceOption, PrecisionOption, QuietOption
from ofactl.errors import OfactlError
from ofactl.progress import ProgressLine


@app.command()
def segment(
    data: Annotated[Optional[Path], typer.Argument(help="Corpus to segment (not needed with --from-alignments).",
                                                   show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="Segment table to write (.tsv).")] = Path(
        "segments.tsv"),
    teacher: Annotated[Optional[str], typer.Option("--teacher", metavar="SPEC",
                                                   help="Teacher for HuBERT-code segments.")] = None,
    layer: Annotated[int, typer.Option("--layer", help="Teacher layer to cluster (Meng et al.: 6).")] = 6,
    clusters: Annotated[int, typer.Option("--clusters", min=2, help="k-means clusters.")] = 100,
    smoothing: Annotated[float, typer.Option("--smoothing", help="DP duration penalty: larger, longer segments.")] = 30.0,
    from_alignments: Annotated[Optional[Path], typer.Option("--from-alignments", metavar="PATH",
                                                            help="Import phone alignments (TSV, CTM, TextGrid).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Alignment format: tsv, ctm or textgrid "
                                                                "(default: detect).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", "-s", help="Use only this split.")] = None,
    layout: LayoutOption = None,
    seed: Annotated[int, typer.Option("--seed", help="k-means seed.")] = 0,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """HuBERT-code segments (teacher layer -> k-means -> duration-penalised DP) or imported alignments."""
    precheck.output_file(out, flag="--out")
    precheck.precision(precision)
    if from_alignments is None:
        if data is None or teacher is None:
            raise OfactlError("HuBERT-code segments need DATA and --teacher",
                              hint="or import phone alignments with --from-alignments PATH")
        precheck.existing(data, "corpus", hint="check the path of the corpus to segment")
        if not teacher.startswith("tiny-random"):
            precheck.existing(teacher, "teacher", hint="pass --teacher with a HuBERT/wav2vec2 checkpoint or folder")
    from ofactl.segments import compute_segments, import_alignments

    if from_alignments is not None:
        table = import_alignments(from_alignments, fmt)
    else:
        from ofactl.data.corpora import probe, read_corpus
        from ofactl.distributed import resolve_device
        from ofactl.teacher import load_teacher

        corpus = probe(read_corpus(data, layout, split=split))
        from ofactl.cli.problems import report_skipped

        model = load_teacher(teacher, device=resolve_device(device))
        kwargs = dict(layer=layer, n_clusters=clusters, smoothing=smoothing, seed=seed, precision=precision)
        with ProgressLine("segmenting", enabled=not quiet) as bar:
            table = compute_segments(corpus.utterances, model, progress=bar.update, **kwargs)
        report_skipped(corpus.problems + table.problems)
    table.save(out)
    typer.echo(f"{out}: {len(table)} utterances, mean segment {table.mean_duration_ms():.0f} ms")
