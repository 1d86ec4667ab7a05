"""``synapseg info``: what a tomogram file holds and whether synapseg can use it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from synapseg.cli import app, err_console, handle_errors
from synapseg.io.volume import read_volume
from synapseg.summary import describe


@app.command()
@handle_errors
def info(
    tomogram: Path = typer.Argument(..., help="Tomogram: MRC/REC, TIFF stack or OME-Zarr."),
    voxel_size: float | None = typer.Option(
        None, "--voxel-size", help="Voxel size in nm; overrides the header."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show shape, voxel size, extent, intensity statistics and warnings for a tomogram.

    Exits with code 2 when the volume cannot be segmented (2D, constant, NaN-only).
    """
    volume = read_volume(tomogram, voxel_size, require_3d=False)
    facts = describe(volume)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
    else:
        _print_table(facts)
    for warning in facts["warnings"]:
        err_console.print(f"warning: {tomogram}: {warning}", markup=False)
    stats = facts["intensity_sample"]
    unusable = volume.shape[0] < 2 or "mean" not in stats or stats.get("std") == 0
    if unusable:
        err_console.print(
            f"error: {tomogram}: this volume cannot be segmented (see the warnings above).",
            markup=False,
        )
        raise typer.Exit(2)


def _print_table(facts: dict) -> None:
    table = Table(title=facts["path"], show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    vs_nm = " × ".join(f"{v:.4g}" for v in facts["voxel_size_nm_zyx"])
    vs_a = " × ".join(f"{v:.4g}" for v in facts["voxel_size_angstrom_zyx"])
    rows = [
        ("format", str(facts["format"])),
        ("shape (z, y, x) [voxels]", " × ".join(str(n) for n in facts["shape_zyx"])),
        ("dtype", facts["dtype"]),
        ("voxel size (z, y, x)", f"{vs_nm} nm = {vs_a} Å (from {facts['voxel_size_source']})"),
        ("extent (z, y, x)", " × ".join(f"{v:.1f}" for v in facts["extent_nm_zyx"]) + " nm"),
        ("origin (z, y, x)", " , ".join(f"{v:.2f}" for v in facts["origin_nm_zyx"]) + " nm"),
        ("memory as float32", f"{facts['float32_memory_gb']:.3f} GB"),
    ]
    stats = facts["intensity_sample"]
    if "mean" in stats:
        rows.append(
            (
                f"intensity (sample of {stats['n_sampled']} voxels)",
                f"mean {stats['mean']:.4g}, std {stats['std']:.4g}, min {stats['min']:.4g}, "
                f"p1 {stats['p1']:.4g}, median {stats['median']:.4g}, p99 {stats['p99']:.4g}, "
                f"max {stats['max']:.4g}",
            )
        )
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    Console(soft_wrap=True).print(table)
