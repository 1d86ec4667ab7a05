"""The ``synapseg`` command line.

The typer app and the shared error handling live in :mod:`synapseg.commands.base`
(re-exported here); each command lives in ``synapseg.commands.<name>``, imports ``app``
from ``synapseg.commands.base`` (never from this module: that would be an import circle)
and registers itself on it when imported below.
"""

from __future__ import annotations

from synapseg.commands.base import (  # noqa: F401 - re-exported: the CLI's public names
    EXIT_INTERRUPTED,
    INTERRUPTED_MESSAGE,
    INTERRUPTED_MESSAGES,
    INTERRUPTED_OTHER,
    app,
    err_console,
    handle_errors,
    main,
    setup_logging,
    show_progress,
)


# Commands register themselves on `app` when imported: one line per command module.
from synapseg.commands import info  # noqa: E402,F401
from synapseg.commands import segment  # noqa: E402,F401
from synapseg.commands import export  # noqa: E402,F401
from synapseg.commands import demo  # noqa: E402,F401
from synapseg.commands import evaluate  # noqa: E402,F401
from synapseg.commands import simulate  # noqa: E402,F401
from synapseg.commands import train  # noqa: E402,F401
from synapseg.commands import predict  # noqa: E402,F401
from synapseg.commands import models  # noqa: E402,F401
from synapseg.commands import adapt  # noqa: E402,F401
from synapseg.commands import filaments  # noqa: E402,F401
