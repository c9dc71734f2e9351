"""The typer app, its root callback and the entry point with the one-line error policy.

Command bodies import their heavy dependencies (torch, the model) themselves,
so ``ofactl --help`` and ``ofactl --version`` stay instant.  Errors a user can
fix are :class:`~ofactl.errors.OfactlError`; :func:`main` prints them as one
line plus a hint (exit code 2).  ``OFACTL_DEBUG=1`` shows the traceback.
Commands live one module each in this package and register on :data:`app`.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ofactl import __version__
from ofactl.errors import OfactlError

__all__ = ["app", "main", "DEBUG_ENV_VAR"]

#: Set to 1 to see the full traceback of any error.
DEBUG_ENV_VAR = "OFACTL_DEBUG"

# ----------------------------------------------------------------------------- app

app = typer.Typer(
    name="ofactl",
    help="Once-for-all sequence compression of speech models: one model, any frame period.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ofactl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Once-for-all sequence compression of speech models: one model, any frame period.

    Commands that need a model take --model DIR, else $OFACTL_MODEL, else the
    default recorded in ofactl.toml (in this directory or a parent).
    """


# ----------------------------------------------------------------------------- entry point


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _print_error(err: OfactlError) -> None:
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(f"[bold red]error:[/] {escape(_one_line(err.message))}")
    if err.hint:
        console.print(f"[yellow]hint:[/] {escape(_one_line(err.hint))}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (console script ``ofactl``).

    Exit codes: 0 success, 2 for an :class:`OfactlError` or a usage error
    (one ``error:`` line plus a ``hint:`` line on stderr), 1 for an unexpected
    exception (one ``internal error:`` line).  With ``OFACTL_DEBUG=1`` the
    traceback is printed as well.
    """
    debug = os.environ.get(DEBUG_ENV_VAR, "").strip() not in ("", "0")
    try:
        app(args=argv, prog_name="ofactl")
    except OfactlError as err:
        if debug:
            traceback.print_exc()
        _print_error(err)
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        detail = _one_line(str(err)) or "(no message)"
        console = Console(stderr=True, soft_wrap=True, highlight=False)
        console.print(
            f"[bold red]internal error:[/] {escape(type(err).__name__)}: {escape(detail)} "
            f"(set {DEBUG_ENV_VAR}=1 for the traceback)"
        )
        sys.exit(1)
