"""``ofactl data inspect``'s report as rich tables (the library's :class:`~ofactl.data.inspect.InspectReport`)."""

from __future__ import annotations

from pathlib import Path

from ofactl.data.inspect import InspectReport


def _relative(path: str, root: str) -> str:
    """``path`` relative to the corpus root when it lies below it."""
    try:
        base = Path(root)
        return Path(path).relative_to(base if base.is_dir() else base.parent).as_posix()
    except ValueError:
        return path


def render(report: InspectReport, console, max_problems: int = 40, max_values: int = 12) -> None:
    """Print ``report`` as rich tables."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]{escape(report.path)}[/]: layout [bold]{report.layout}[/], "
                  f"{report.utterances} utterances, {report.hours:.2f} h"
                  + ("" if report.deep else " (headers read, files not decoded: --deep decodes them)"))
    table = Table(title="splits", title_justify="left")
    table.add_column("split")
    table.add_column("utterances", justify="right")
    table.add_column("hours", justify="right")
    table.add_column("speakers", justify="right")
    for s in report.splits:
        table.add_row(s.name, str(s.utterances), f"{s.hours:.3f}", "-" if s.speakers is None else str(s.speakers))
    console.print(table)
    for key, counts in report.labels.items():
        t = Table(title=f"label {key}: {len(counts)} values", title_justify="left")
        t.add_column(key)
        t.add_column("count", justify="right")
        for value, n in list(counts.items())[:max_values]:
            t.add_row(escape(value), str(n))
        if len(counts) > max_values:
            t.add_row(f"... {len(counts) - max_values} more", "")
        console.print(t)
    for key, stats in report.sequence_labels.items():
        what = "sentence pairs" if key == "translation" else "utterances"
        console.print(f"label {key}: {stats['utterances']} {what}, {stats['tokens']} tokens, "
                      f"{stats['distinct']} distinct")
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    if not report.problems:
        console.print("[green]no problems found[/]")
        return
    counts = ", ".join(f"{n} {reason}" for reason, n in report.problem_counts().items())
    t = Table(title=f"problems: {len(report.problems)} ({counts}); files relative to {escape(report.path)}",
              title_justify="left")
    # a path is what the user needs: never ellipsised, wrapped instead (also in a log or a pipe)
    t.add_column("file", overflow="fold", min_width=12)
    t.add_column("reason", no_wrap=True)
    t.add_column("detail", overflow="fold")
    for p in report.problems[:max_problems]:
        t.add_row(escape(_relative(p.path, report.path)), p.reason, escape(p.detail))
    if len(report.problems) > max_problems:
        t.add_row(f"... {len(report.problems) - max_problems} more (--json lists all)", "", "")
    console.print(t)
