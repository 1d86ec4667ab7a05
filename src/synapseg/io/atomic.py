"""Atomic file writing: write to ``<target>.tmp``, fsync, rename; never half-written files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from synapseg.errors import InputError, OutputExistsError


def check_writable(target: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that ``target`` may be written, creating its parent folder if needed.

    Raises
    ------
    OutputExistsError
        The file exists and ``overwrite`` is false.
    InputError
        The parent folder cannot be created or written to, or the target is a folder.
    """
    target = Path(target)
    if target.is_dir():
        raise InputError(target, "output path is a folder, not a file", "choose a file name")
    if target.exists() and not overwrite:
        raise OutputExistsError(
            target, "output file exists", "pass --overwrite to replace it or choose another output"
        )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            parent, f"cannot create the output folder ({exc.strerror})", "choose a writable folder"
        ) from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(parent, "output folder is not writable", "choose a writable folder")
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched.

    Examples
    --------
    >>> with atomic_path("out.csv", overwrite=True) as tmp:  # doctest: +SKIP
    ...     df.to_csv(tmp)
    """
    target = check_writable(target, overwrite)
    tmp = target.with_name(target.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(target: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``target`` atomically and return the target path."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)
