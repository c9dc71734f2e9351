"""``ofactl calibrate`` and ``ofactl extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ofactl.cli import precheck
from ofactl.cli.app import app
from ofactl.cli.problems import report_skipped
from ofactl.cli.options import (
    DeviceOption, IdFromOption, LambdaOption, LayoutOption, ModelOption, PeriodOption, PrecisionOption, QuietOption,
    SplitOption,
)
from ofactl.errors import OfactlError
from ofactl.period import FramePeriod
from ofactl.progress import ProgressLine



@app.command()
def calibrate(
    data: Annotated[Path, typer.Argument(help="Corpus to measure frame periods on.", show_default=False)],
    model: ModelOption = None,
    split: SplitOption = None,
    layout: LayoutOption = None,
    id_from: IdFromOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FIG", show_default=False,
                                                 help="Also draw lambda vs frame period (.png, .pdf or .svg).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Measure the frame period over a lambda grid; store the table in the model directory."""
    precheck.existing(data, "corpus", hint="check the path of the corpus to calibrate on")
    precheck.precision(precision)
    model = precheck.model(model)  # before torch: a wrong path is reported at once
    if plot is not None:
        from ofactl.plot import check_figure_path

        check_figure_path(plot)  # a bad suffix fails before the measurement, not after
    from ofactl import load_model
    from ofactl.calibrate import measure_calibration
    from ofactl.cli.calibration_table import render_table
    from ofactl.malloc_tuning import keep_freed_memory

    keep_freed_memory()  # batches' large tensors reuse memory instead of page-faulting it in (OFACTL_MALLOC=system)
    m = load_model(model, device=device, precision=precision)
    with ProgressLine("calibrating", enabled=not quiet) as bar:
        run = measure_calibration(m, data, split=split, layout=layout, id_from=id_from, progress=bar.update)
    cal = run.calibration
    report_skipped(run.problems)
    for line in run.warnings:
        Console(stderr=True, soft_wrap=True, highlight=False).print(f"[yellow]warning:[/] {escape(line)}")
    console = Console(soft_wrap=True)
    console.print(render_table(cal))
    console.print(f"calibrated range {cal.range_text()} on {cal.n_utterances} utterances "
                  f"({cal.total_duration_s / 3600:.2f} h); saved in the model directory")
    if plot is not None:
        from ofactl.plot import plot_calibration, save_figure

        console.print(f"wrote {save_figure(plot_calibration(cal), plot)}", highlight=False)
    if cal.max_interp_error is not None and cal.max_interp_error > 0.02:
        Console(stderr=True).print(
            f"[yellow]warning:[/] with {cal.n_utterances} utterances the period moves in steps: interpolating the "
            f"table may err up to {100 * cal.max_interp_error:.0f}% (calibrate on more data for < 2%)")


@app.command()
def extract(
    wavs: Annotated[Path, typer.Argument(help="Folder of audio, a manifest, or a corpus.", show_default=False)],
    out: Annotated[Path, typer.Argument(help="HDF5 file to write (OUT.h5).", show_default=False)],
    period: PeriodOption = None,
    lam: LambdaOption = None,
    exact: Annotated[bool, typer.Option("--exact", help="round(duration / period) frames per utterance.")] = False,
    model: ModelOption = None,
    layer: Annotated[str, typer.Option("--layer", help="last, all, or a layer number (0 = transformer input).")] = "last",
    dtype: Annotated[str, typer.Option("--dtype", help="float16 or float32.")] = "float16",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a complete OUT.h5.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero if any file was skipped.")] = False,
    layout: LayoutOption = None,
    split: SplitOption = None,
    id_from: IdFromOption = None,
    batch_s: Annotated[float, typer.Option("--batch-seconds", min=1.0, help="Padded audio seconds per batch.")] = 160.0,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Audio-reading worker processes.")] = 2,
    part_mb: Annotated[float, typer.Option("--part-mb", min=0.0, help="MB of features per crash-safe part file.")] = 64.0,
    lhotse_manifest: Annotated[Optional[Path], typer.Option(
        "--lhotse-manifest", metavar="FILE", show_default=False,
        help="Also write a lhotse CutSet manifest (e.g. cuts_feats.jsonl.gz) whose features point into OUT.h5 "
             "(needs --exact).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Extract features at a frame period (or lambda) into HDF5; resumable, crash-safe, torchrun-aware."""
    import os

    if dtype not in ("float16", "float32"):
        raise OfactlError(f"--dtype must be float16 or float32, found {dtype!r}")
    precheck.period_or_lambda(period, lam, exact=exact)  # before torch: argument errors come at once
    precheck.precision(precision)
    precheck.existing(wavs, "input", hint="give a folder of audio, a manifest, a corpus or one audio file")
    precheck.output_file(out)
    if lhotse_manifest is not None:
        if not exact or layer == "all":
            raise OfactlError("--lhotse-manifest needs --exact and one layer (lhotse assumes one frame shift and a "
                              "(frames, dim) matrix per cut)",
                              hint="choose one layer (--layer last or a number)" if exact else "add --exact")
        precheck.output_file(lhotse_manifest, flag="--lhotse-manifest")
    model = precheck.model(model)
    from ofactl import load_model
    from ofactl.extract import extract_features
    from ofactl.malloc_tuning import keep_freed_memory

    keep_freed_memory()  # batches' large tensors reuse memory instead of page-faulting it in (OFACTL_MALLOC=system)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    m = load_model(model, device=device, precision=precision)  # under torchrun, "auto" is this rank's GPU
    with ProgressLine("extracting", enabled=not quiet and main_rank) as bar:
        result = extract_features(wavs, out, model=m, period=period, lam=lam, exact=exact, layer=layer, dtype=dtype,
                                  overwrite=overwrite, layout=layout, split=split, id_from=id_from,
                                  max_batch_s=batch_s, num_workers=workers, part_mb=part_mb, progress=bar.update)
    if not main_rank:
        return
    console = Console(stderr=True, soft_wrap=True)
    target = f"target {FramePeriod(result.target_period_ms)}" if result.target_period_ms else f"lambda {result.lam:.4g}"
    measured = f"{result.measured_period_ms:.1f}ms" if result.measured_period_ms else "-"
    typer.echo(f"{result.out}: {result.n_utterances} utterances, {target}, measured {measured}"
               + (f", lambda {result.lam:.4g}" if result.lam is not None and result.target_period_ms else "")
               + f" ({result.precision}, {result.audio_s / max(result.seconds, 1e-9):.0f} audio-s/s this run)")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    report_skipped(result.skipped, verb="skipped (recorded in the `skipped` attribute)")
    if lhotse_manifest is not None:
        from ofactl.lhotse_io import write_cuts_manifest

        n = write_cuts_manifest(result.out, wavs, lhotse_manifest, layout=layout, split=split, id_from=id_from)
        typer.echo(f"{lhotse_manifest}: {n} cuts with features in {result.out} (lhotse: cut.load_features())")
    if result.skipped and strict:
        raise typer.Exit(3)
