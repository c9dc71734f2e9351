"""``ofactl compare``: the paired difference of two runs in a results table, with its interval and a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ofactl.cli.app import app
from ofactl.cli.options import JsonOption


@app.command()
def compare(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="The results table (CSV).", show_default=False)],
    task: Annotated[str, typer.Option("--task", "-t", metavar="TASK", show_default=False, help="The task.")],
    a: Annotated[str, typer.Option("--a", metavar="MODEL[@POINT][:PREC]", show_default=False,
                                   help="Run A: a model, at a period (90ms), lambda=X, learned[-initX] or best; "
                                        ":fp32 or :bf16 where the point was run in both.")],
    b: Annotated[str, typer.Option("--b", metavar="MODEL[@POINT][:PREC]", show_default=False,
                                   help="Run B, as --a.")],
    metric: Annotated[Optional[str], typer.Option("--metric", metavar="NAME", show_default=False,
                                                  help="Metric (default: the task's primary one).")] = None,
    margin: Annotated[Optional[float], typer.Option(
        "--margin", metavar="X", show_default=False,
        help="Equivalence margin in the metric's units (0.02 = 2 points): also say whether the interval lies "
             "within ±X.")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", metavar="L", show_default=False,
                                                 help="Only rows of this layer (when a point has several).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Is run A better than run B? Paired bootstrap over the test utterances both scored (95%, 1000 resamples).

    Prints each run's value, the difference A - B with its 95% interval, and
    a verdict: "A better", "B better" or "no difference at 95%".
    """
    import json

    from ofactl.compare import compare_runs
    from ofactl.cli.report import _console, _warn_line

    c = compare_runs(results, task, a, b, metric=metric, margin=margin, layer=layer, warn=_warn_line)
    if json_output:
        typer.echo(json.dumps(c.to_dict(), indent=1))
        return
    console = _console()
    for line in comparison_lines(c):
        console.print(line, highlight=False)


def comparison_lines(c) -> list[str]:
    """The comparison as plain lines (what ``ofactl compare`` prints)."""
    d = c.difference
    direction = "higher is better" if d.higher_is_better else "lower is better"
    lines = [f"{c.task} {c.metric} ({direction}); paired bootstrap over the {d.n} test utterances both runs scored, "
             f"{d.n_resamples} resamples, {round(d.level * 100)}% intervals"]
    width = max(len(c.a.label), len(c.b.label))
    for name, run, ci in (("A", c.a, c.a_interval), ("B", c.b, c.b_interval)):
        seeds = f"{len(run.seeds)} seed{'s' if len(run.seeds) != 1 else ''}"
        extra = f"; {run.note}" if run.note else ""
        lines.append(f"  {name}  {run.label:<{width}}  {ci.text(digits=4)}  (measured {run.measured_period_ms:.1f} ms, "
                     f"lambda {run.lam:.3g}, {seeds}{extra})")
    lines.append(f"  A - B  {d.diff:+.4f} [{d.low:+.4f}, {d.high:+.4f}]")
    lines.append(f"verdict: {c.verdict}")
    return lines


@app.command()
def claims(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="The results table (CSV).", show_default=False)],
    widest: Annotated[str, typer.Option("--widest", metavar="MODEL", show_default=False,
                                        help="The widest-range OFA model (lambda in [0, 2)).")],
    narrower: Annotated[Optional[str], typer.Option("--narrower", metavar="M,M", show_default=False,
                                                    help="Narrower-range OFA models (lambda_max 1, 1.5).")] = None,
    fixed: Annotated[Optional[str], typer.Option("--fixed", metavar="MODEL", show_default=False,
                                                 help="The fixed-rate model (pretrained at lambda 1).")] = None,
    plain: Annotated[Optional[str], typer.Option("--plain", metavar="MODEL", show_default=False,
                                                 help="The lambda_max = 0 model (its +avgpool rows are the "
                                                      "average-pooling baseline).")] = None,
    margin: Annotated[float, typer.Option("--margin", metavar="X", min=0.0,
                                          help="Equivalence margin for 'comparable' and 'on par' (0.05 = 5 points).")]
    = 0.05,
    long_period: Annotated[str, typer.Option("--long-period", metavar="PERIOD",
                                             help="Claim (e) compares CIF and average pooling from this period up.")]
    = "300ms",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE.md", show_default=False,
                                                   help="Also write the Markdown table to this file.")] = None,
) -> None:
    """The paper's five claims, each tested with paired bootstrap comparisons on RESULTS; a Markdown table."""
    from ofactl.atomic import atomic_write_text
    from ofactl.claims import check_claims, render_claims
    from ofactl.cli.report import _warn_line
    from ofactl.period import FramePeriod

    names = [m.strip() for m in (narrower or "").split(",") if m.strip()]
    found = check_claims(results, widest=widest, narrower=names, fixed=fixed, plain=plain, margin=margin,
                         long_period_ms=FramePeriod.parse(long_period).ms, warn=_warn_line)
    text = render_claims(found)
    typer.echo(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, text + "\n")
