"""Errors that describe bad user input.

The CLI turns every :class:`InputError` into one line on stderr
(``error: <file>: <problem>. <fix>``) and exit code 2; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """A problem with a user's file, option or data that the user can fix.

    Parameters
    ----------
    path
        The file (or option name) the problem is about; ``None`` when there is none.
    problem
        What is wrong, as a sentence fragment without a final full stop.
    fix
        What the user should do about it, as a sentence fragment.
    """

    def __init__(self, path: str | PathLike | None, problem: str, fix: str = "") -> None:
        self.path = None if path is None else str(path)
        self.problem = problem.rstrip(". ")
        self.fix = fix.rstrip(". ")
        super().__init__(self.message)

    @property
    def message(self) -> str:
        head = f"{self.path}: " if self.path else ""
        fix = self.fix[:1].upper() + self.fix[1:]
        tail = f". {fix}." if fix else "."
        return f"{head}{self.problem}{tail}"


class VoxelSizeError(InputError):
    """The voxel size is unknown, implausible or invalid."""


class OutputExistsError(InputError):
    """An output file exists and ``overwrite`` was not requested."""


class ModelError(InputError):
    """A model file or card is missing, corrupt or does not match its checksum."""
