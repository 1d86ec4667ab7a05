"""Atomic file writing: write to ``<target>.tmp``, fsync, rename; never half-written files.

Also the disk-space guards: :func:`check_free_space` before a run starts and
:func:`preallocate` for memory-mapped outputs, so that a full disk is a clear
:class:`~synapseg.errors.InputError` instead of a SIGBUS in the middle of a memmap write.
A ``*.tmp`` left by a killed run is removed and redone; no ``*.tmp`` survives an exception.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from synapseg.errors import InputError, OutputExistsError

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``: a size for messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def disk_full_error(path: str | os.PathLike, exc: OSError | None = None) -> InputError:
    """The one-line error for ENOSPC/EDQUOT while writing ``path``."""
    what = "no space left on the device" if exc is None else f"{exc.strerror or exc}".lower()
    return InputError(
        path,
        f"cannot write: {what}",
        "free disk space (or choose another -o folder) and rerun the same command to resume",
    )


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-space error (ENOSPC or EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def check_free_space(folder: str | os.PathLike, needed_bytes: int, what: str = "outputs") -> int:
    """Refuse to start when ``folder``'s file system has less than ``needed_bytes`` free.

    Parameters
    ----------
    folder
        Output folder (or a file in it); the nearest existing parent is checked.
    needed_bytes
        Bytes the planned writes need.
    what
        What the bytes are for, for the message.

    Returns
    -------
    int
        Free bytes on that file system.

    Raises
    ------
    InputError
        Not enough free space: the message says how much is needed and how much is free.
    """
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = int(shutil.disk_usage(probe).free)
    except OSError as exc:  # e.g. a network mount that cannot report; don't block the run
        log.debug("cannot check free space on %s: %s", probe, exc)
        return -1
    if free < needed_bytes:
        raise InputError(
            folder,
            f"not enough free disk space for the {what}: {format_bytes(needed_bytes)} needed, "
            f"{format_bytes(free)} free",
            "free disk space or choose another -o folder",
        )
    return free


def preallocate(path: str | os.PathLike, nbytes: int) -> None:
    """Reserve ``nbytes`` of disk for the file at ``path`` (``os.posix_fallocate``).

    A memory-mapped file is otherwise sparse: running out of space while writing into the
    map kills the process with SIGBUS. After this call, a full disk is an ``InputError``
    raised here. Without ``posix_fallocate`` (macOS, Windows) or on a file system that
    does not support it, nothing is reserved.

    Raises
    ------
    InputError
        The disk (or quota) has less than ``nbytes`` free.
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None or nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, 0, int(nbytes))
    except OSError as exc:
        if is_disk_full(exc):
            name = str(path)
            target = name[: -len(TMP_SUFFIX)] if name.endswith(TMP_SUFFIX) else name
            raise disk_full_error(target, exc) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        log.debug("%s: cannot preallocate (%s); writing a sparse file", path, exc)
    finally:
        os.close(fd)


def remove_stale(tmp: str | os.PathLike) -> None:
    """Remove a ``*.tmp`` file or folder left by a killed run (a no-op when absent)."""
    tmp = Path(tmp)
    if tmp.is_dir() and not tmp.is_symlink():
        log.info("removing %s left by an interrupted run", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists() or tmp.is_symlink():
        log.info("removing %s left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


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

    A stale temporary file from a killed run is removed first. On any exception the
    temporary file is removed and ``target`` is left untouched; running out of disk space
    becomes a one-line :class:`~synapseg.errors.InputError`.

    Examples
    --------
    >>> with atomic_path("out.csv", overwrite=True) as tmp:  # doctest: +SKIP
    ...     df.to_csv(tmp)
    """
    target = check_writable(target, overwrite)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    remove_stale(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_disk_full(exc):
            raise disk_full_error(target, exc) from exc  # type: ignore[arg-type]
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside ``target``; move it onto ``target`` on success.

    The folder counterpart of :func:`atomic_path`, for stores that are folders (Zarr). An
    existing ``target`` is refused unless ``overwrite``; it is only removed once the new
    folder is complete. On any exception the temporary folder is removed and ``target``
    is left untouched.

    Raises
    ------
    OutputExistsError
        ``target`` exists and ``overwrite`` is false.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            target, "output exists", "pass --overwrite to replace it or choose another output"
        )
    tmp = target.with_name(target.name + TMP_SUFFIX)
    remove_stale(tmp)
    check_writable(tmp, overwrite=True)  # the parent folder exists and is writable
    try:
        tmp.mkdir()
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(target, exc) from exc  # type: ignore[arg-type]
        raise


def write_text_atomic(target: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``target`` atomically and return the target path."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)
