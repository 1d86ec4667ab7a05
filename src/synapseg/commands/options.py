"""Shared command-line options, and help that reads like one tool.

Options that several commands take (``--voxel-size``, ``--model``, ``--device``,
``--overwrite``, ``--invert``, ``--tta``, ``--tile-size``, ``--quiet``) are defined here
once, so their name, short form, default, metavar and help are the same everywhere. Each
function returns a fresh ``typer.Option`` to use as a parameter default::

    voxel_size: float | None = voxel_size_option()

:class:`PlainHelpGroup` (the app's group class) makes every command's help free of Python
types: flags show no value at all, and values show a metavar (``NM``, ``PATH``, ``N``...)
instead of typer's ``<float>``, ``<bool>`` or ``<list[Path]>``.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

__all__ = [
    "DEVICE_HELP",
    "INVERT_HELP",
    "MODEL_HELP",
    "OVERWRITE_HELP",
    "QUIET_HELP",
    "TILE_SIZE_HELP",
    "TTA_HELP",
    "VOXEL_SIZE_HELP",
    "PlainHelpGroup",
    "device_option",
    "invert_option",
    "metavar_for",
    "model_option",
    "overwrite_option",
    "quiet_option",
    "tile_size_option",
    "tta_option",
    "voxel_size_option",
]

VOXEL_SIZE_HELP = "Voxel size in nm; overrides the file header."
MODEL_HELP = "Model: a shipped name (see 'synapseg models'), a model folder or its model.json."
DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N."
OVERWRITE_HELP = "Replace existing outputs."
QUIET_HELP = "Only errors; no progress bars."
TTA_HELP = "Test-time augmentation: average 8 flips (8x slower)."
TILE_SIZE_HELP = "Largest tile edge in model voxels (default 256)."
INVERT_HELP = "Contrast: auto (decided once from the data), yes (bright densities: invert) or no."


def voxel_size_option() -> Any:
    """``--voxel-size NM``: the input tomogram's voxel size, overriding its header."""
    return typer.Option(None, "--voxel-size", metavar="NM", help=VOXEL_SIZE_HELP)


def model_option(default: str = "default") -> Any:
    """``--model/-m NAME|PATH``: a shipped model name, a model folder or a model.json."""
    return typer.Option(default, "--model", "-m", metavar="NAME|PATH", help=MODEL_HELP)


def device_option() -> Any:
    """``--device DEVICE`` (default ``auto``)."""
    return typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP)


def overwrite_option() -> Any:
    """``--overwrite``: a flag; existing outputs are never replaced without it."""
    return typer.Option(False, "--overwrite", help=OVERWRITE_HELP)


def invert_option() -> Any:
    """``--invert auto|yes|no`` (default ``auto``): the tomogram's contrast polarity."""
    return typer.Option("auto", "--invert", metavar="auto|yes|no", help=INVERT_HELP)


def tta_option() -> Any:
    """``--tta``: a flag; average the predictions of the 8 axis flips."""
    return typer.Option(False, "--tta", help=TTA_HELP)


def tile_size_option() -> Any:
    """``--tile-size VOXELS``: the largest tile edge in model voxels."""
    return typer.Option(None, "--tile-size", metavar="VOXELS", help=TILE_SIZE_HELP)


def tilt_range_option() -> Any:
    """``--tilt-range DEG`` (default: estimated from the data): the ± tilt range."""
    return typer.Option(
        None,
        "--tilt-range",
        metavar="DEG",
        help="Tilt range ± degrees (default: estimated from the data).",
    )


def tilt_axis_option() -> Any:
    """``--tilt-axis y|x|dual`` (default: estimated from the data)."""
    return typer.Option(
        None,
        "--tilt-axis",
        metavar="y|x|dual",
        help="Tilt axis: y, x or dual (default: estimated from the data).",
    )


def quiet_option() -> Any:
    """``--quiet/-q``: only errors, no progress bars."""
    return typer.Option(False, "--quiet", "-q", help=QUIET_HELP)


# --------------------------------------------------------------------------- help display

_TYPE_METAVARS: dict[Any, str] = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _type_label(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (list, tuple) or annotation in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return " ".join(_type_label(a) for a in args) if origin is tuple else _type_label(args[0])
    if origin is not None:  # e.g. Optional[...] left in place: take the non-None member
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _type_label(args[0]) if args else "VALUE"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "PATH"
    return _TYPE_METAVARS.get(annotation, "VALUE")


def metavar_for(param: Any) -> str | None:
    """What the help shows for a parameter's value: its metavar, ``None`` for a flag,
    the choices for a choice, else a plain word for its type (``N``, ``NUMBER``, ``TEXT``,
    ``PATH``); ``...`` follows arguments that take several values."""
    if isinstance(param, TyperOption) and (param.is_flag or param.count):
        return None
    if param.metavar is not None:
        label = param.metavar
    else:
        desc = param.type_descriptor
        if desc.is_choice and desc.choices is not None:
            label = "|".join(str(getattr(c, "value", c)) for c in desc.choices)
        else:
            label = _type_label(desc.annotation)
    if isinstance(param, TyperArgument) and param.nargs != 1 and not label.endswith("..."):
        label += "..."
    return label


def plain_help(command: Any, ctx: Any) -> Any:
    """Make ``command``'s parameters (its ``--help`` included) show :func:`metavar_for`."""
    for param in command.get_params(ctx):
        if isinstance(param, (TyperOption, TyperArgument)):
            label = metavar_for(param)
            param.display_type_rich = types.MethodType(lambda self, ctx, _l=label: _l, param)
    return command


class PlainHelpGroup(TyperGroup):
    """The app's command group: its own help and every subcommand's help without Python
    types (see :func:`metavar_for`); applied to commands registered at any time."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return None if command is None else plain_help(command, ctx)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain_help(self, ctx)
        super().format_help(ctx, formatter)
