"""The typer app every command registers on, and the CLI's shared error handling.

Command modules (``synapseg.commands.<name>``) import :data:`app` from here and register
themselves with ``@app.command()``; :mod:`synapseg.cli` imports them all. This module imports
no command, so there is no import circle between the CLI and its commands.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from synapseg import __version__
from synapseg.commands.options import PlainHelpGroup, quiet_option
from synapseg.errors import InputError

app = typer.Typer(
    name="synapseg",
    help="Segment synaptic vesicles in cryo-electron tomograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=PlainHelpGroup,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


INTERRUPTED_MESSAGE = "interrupted; rerun the same command to resume"
INTERRUPTED_MESSAGES = {
    "segment": INTERRUPTED_MESSAGE,
    "train": "interrupted; add --resume to the same command to continue from the last checkpoint",
}
"""What to do after Ctrl-C, by command; others get :data:`INTERRUPTED_OTHER`."""
INTERRUPTED_OTHER = "interrupted; no file was half-written"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def handle_errors(fn: F) -> F:
    """Turn ``InputError`` into one ``error: ...`` line on stderr and exit code 2, and
    Ctrl-C (SIGINT) into one ``interrupted; ...`` line and exit code 130 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"error: {exc.message}", markup=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            message = INTERRUPTED_MESSAGES.get(fn.__name__, INTERRUPTED_OTHER)
            err_console.print(message, markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


class _StderrHandler(logging.Handler):
    """Log records as ``warning: ...`` lines on the current stderr (CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{record.levelname.lower()}: {self.format(record)}\n")
        except Exception:  # pragma: no cover - logging must never crash the tool
            self.handleError(record)


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Send synapseg's log records to stderr at a level chosen by the flags."""
    logger = logging.getLogger("synapseg")
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"synapseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
    quiet: bool = quiet_option(),
) -> None:
    """Segment synaptic vesicles in cryo-electron tomograms."""
    setup_logging(verbose, quiet)
    ctx.ensure_object(dict)["quiet"] = quiet


def show_progress(ctx: typer.Context) -> bool:
    """Progress bars only on a terminal and without ``--quiet``."""
    quiet = bool((ctx.find_root().obj or {}).get("quiet"))
    return not quiet and sys.stderr.isatty()
