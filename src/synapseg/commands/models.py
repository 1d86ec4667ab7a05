"""``synapseg models``: the shipped models and their cards."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from synapseg.commands.base import app, handle_errors


@app.command()
@handle_errors
def models(
    name: str | None = typer.Argument(
        None, help="Show this model's whole card (a name, model folder or model.json)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the shipped models (voxel size, training, checksum), or show one model's card."""
    from synapseg.model.registry import (
        available_models,
        default_model_name,
        read_card,
        resolve_model,
    )

    if name is not None:
        card = read_card(resolve_model(name))
        typer.echo(json.dumps(card.to_dict(), indent=2, default=str))
        return
    default = default_model_name()
    cards = [read_card(resolve_model(n)) for n in available_models()]
    if as_json:
        rows = [{**c.to_dict(), "default": c.name == default} for c in cards]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="shipped models", title_justify="left")
    for col in ("name", "voxel size", "trained", "validation F1", "sha256"):
        table.add_column(col, no_wrap=col in ("name", "sha256"))
    for c in cards:
        f1 = (c.metrics.get("validation") or {}).get("f1")
        table.add_row(
            c.name + (" (default)" if c.name == default else ""),
            f"{c.voxel_size_nm:g} nm",
            "yes" if c.trained else "no (random stand-in)",
            "-" if f1 is None else f"{f1:.3f}",
            c.sha256[:12],
        )
    Console(soft_wrap=True).print(table)
    typer.echo("synapseg models NAME shows a model's whole card.")
