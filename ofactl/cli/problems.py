"""How the CLI shows the inputs a job left out (:class:`ofactl.data.problems.Problem`)."""

from __future__ import annotations

from rich.console import Console

from ofactl.data.problems import Problem


def report_skipped(problems: "list[Problem]", limit: int = 20, verb: str = "left out") -> None:
    """Print each left-out file (path: reason) on stderr, as one warning block (``N file(s) <verb>:``)."""
    if not problems:
        return
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(f"[yellow]warning:[/] {len(problems)} file(s) {verb}:")
    for p in problems[:limit]:
        console.print(f"  {p.path}: {p.reason} ({p.detail})")
    if len(problems) > limit:
        console.print(f"  ... and {len(problems) - limit} more (`ofactl data inspect` lists them all)")
