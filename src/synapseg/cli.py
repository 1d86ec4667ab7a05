"""The ``synapseg`` command line.

The typer app and the shared error handling live in :mod:`synapseg.commands.base`
(re-exported here); each command lives in ``synapseg.commands.<name>``, imports ``app``
from ``synapseg.commands.base`` (never from this module: that would be an import circle)
and registers itself on it when imported.

``from synapseg.cli import app`` (tests, library callers) gets the app with every command.
The console script runs :func:`run`, which imports only the command on its command line:
the other commands' modules (evaluation, training, simulation: pandas extras, scipy.optimize)
cost ≈ 0.4 s of start-up that ``synapseg segment`` does not need (issue 17).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from synapseg.commands.base import (  # noqa: F401 - re-exported: the CLI's public names
    EXIT_INTERRUPTED,
    INTERRUPTED_MESSAGE,
    INTERRUPTED_MESSAGES,
    INTERRUPTED_OTHER,
    err_console,
    handle_errors,
    main,
    setup_logging,
    show_progress,
)

COMMANDS = (
    "info",
    "segment",
    "export",
    "demo",
    "evaluate",
    "simulate",
    "train",
    "predict",
    "models",
    "adapt",
    "filaments",
)
"""Every command, in the order ``synapseg --help`` lists them; each is the module
``synapseg.commands.<name>``, which registers the command of that name."""


def register(names: Sequence[str] = COMMANDS):
    """Import (and so register) the commands ``names``; return the typer app."""
    from synapseg.commands.base import app

    for name in names:
        importlib.import_module(f"synapseg.commands.{name}")
    return app


def __getattr__(name: str):
    if name == "app":  # the whole command line, for tests and library callers
        return register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _huge_pages_for_torch() -> None:
    """Let PyTorch's CPU allocator back its large blocks (>= 2 MB: the network's activations)
    with transparent huge pages, where the kernel offers them (``THP_MEM_ALLOC_ENABLE``,
    read at torch's first allocation; a value the user set is kept): 512x fewer page
    faults for the tensors each tile allocates afresh (issue 17)."""
    if "THP_MEM_ALLOC_ENABLE" in os.environ:
        return
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:  # not Linux, or no THP
        return
    if "[never]" not in mode:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"


def run(argv: Sequence[str] | None = None) -> None:
    """The console script: run ``synapseg ARGS`` (default ``sys.argv[1:]``), importing only
    the command named in them (every command for ``--help``, no command or an unknown one,
    so that help and "no such command" list them all)."""
    _huge_pages_for_torch()
    args = list(sys.argv[1:] if argv is None else argv)
    # the global options (--verbose, --quiet, --version) take no value: the first word
    # that is not an option is the command
    chosen = next((a for a in args if not a.startswith("-")), None)
    app = register([chosen] if chosen in COMMANDS else COMMANDS)
    app(args=args, prog_name="synapseg")
