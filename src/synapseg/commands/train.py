"""``synapseg train``: train or fine-tune a vesicle model on annotated tomograms."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from synapseg.commands.base import app, err_console, handle_errors, show_progress
from synapseg.commands.options import device_option, overwrite_option
from synapseg.errors import InputError


def _patch_size(text: str) -> tuple[int, int, int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 8:
        raise InputError("--patch-size", f"invalid patch size '{text}'", "give e.g. 64 or 48,64,64")
    return tuple(values)  # type: ignore[return-value]


NO_VALIDATION_WARNING = (
    "warning: {data}: no validation data (a single tomogram, or --val-fraction 0): the "
    "model's quality is not measured while training and the last weights are kept; give two "
    "or more annotated tomograms (or mark one 'split: val' in a YAML config) to validate"
)


def _has_validation(data: Path, val_fraction: float, seed: int) -> bool:
    """Whether ``train`` will hold out validation tomograms (same split as training)."""
    from synapseg.train.data import load_data_config, split_items

    return bool(split_items(load_data_config(data), val_fraction, seed)[1])


def _plain_progress_line(step: int, total: int, logs: dict, val: str, seconds: float) -> str:
    """One progress line for logs (stderr not a terminal)."""
    pct = 100.0 * step / max(total, 1)
    return (
        f"train: step {step}/{total} ({pct:.0f}%), loss {logs['loss_avg']:.4f}{val}, "
        f"{seconds:.0f} s elapsed"
    )


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    data: Path = typer.Option(
        ..., "--data", help="Data folder (one subfolder per tomogram) or YAML config."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Model folder to write."),
    from_model: str | None = typer.Option(
        None, "--from", help="Fine-tune this model: 'default', a name or a model folder."
    ),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the training data."),
    steps: int | None = typer.Option(None, "--steps", help="Optimiser steps (overrides epochs)."),
    patch_size: str = typer.Option("48,64,64", "--patch-size", help="Patch (z,y,x) or edge."),
    batch_size: int = typer.Option(2, "--batch-size", min=1),
    lr: float | None = typer.Option(
        None, "--lr", help="Learning rate (default 2e-3, 5e-4 when fine-tuning)."
    ),
    voxel_size: float | None = typer.Option(
        None,
        "--model-voxel-size",
        metavar="NM",
        help="Model voxel size in nm for a new model (1.8).",
    ),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.0, max=0.9),
    val_every: int = typer.Option(200, "--val-every", min=1),
    boundary: bool = typer.Option(False, "--boundary", help="Add a vesicle-boundary channel."),
    device: str = device_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    seed: int = typer.Option(0, "--seed", help="Random seed (runs are reproducible on CPU)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Train a model from scratch, or fine-tune one (--from default) on your annotations.

    Writes OUTPUT/model.pt + OUTPUT/model.json (usable as `segment --model OUTPUT`) and
    checkpoints in OUTPUT/checkpoints/ (continue with --resume). Progress goes to stderr: a
    bar on a terminal, otherwise a plain line every 5 % of the steps and at each validation.
    """
    import torch

    from synapseg.train.run import train_model
    from synapseg.train.trainer import TrainConfig

    if threads:
        torch.set_num_threads(threads)
    from synapseg.infer.forward import select_device

    device = str(select_device(device))  # auto: CUDA when available, else CPU
    if epochs is None and steps is None:
        epochs = 10.0
    config = TrainConfig(
        steps=steps or 1,
        batch_size=batch_size,
        patch_size=_patch_size(patch_size),
        lr=lr if lr is not None else (5e-4 if from_model else 2e-3),
        val_every=val_every,
        boundary=boundary,
        seed=seed,
    )
    quiet = bool((ctx.find_root().obj or {}).get("quiet"))  # --quiet: only errors
    if not quiet and not _has_validation(data, val_fraction, seed):
        err_console.print(NO_VALIDATION_WARNING.format(data=data), markup=False)
    bar = show_progress(ctx)  # a terminal and no --quiet
    plain = not bar and not quiet
    t_start = time.perf_counter()
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not bar,
    )
    state: dict = {"task": None, "val": ""}

    def callback(step: int, logs: dict) -> None:
        if "val" in logs:
            v = logs["val"]
            state["val"] = f" val F1 {v.get('f1', 0):.3f} Dice {v.get('dice', 0):.3f}"
        if state["task"] is None:
            state["task"] = progress.add_task("train", total=config.steps, info="")
        info = f"loss {logs['loss_avg']:.4f}{state['val']}"
        progress.update(state["task"], completed=step, info=info)
        every = max(1, config.steps // 20)  # config.steps is final once training runs
        if plain and (step % every == 0 or step >= config.steps or "val" in logs):
            seconds = time.perf_counter() - t_start
            line = _plain_progress_line(step, config.steps, logs, state["val"], seconds)
            typer.echo(line, err=True)

    with progress:
        result = train_model(
            data,
            output,
            config=config,
            from_model=from_model,
            voxel_size_nm=voxel_size,
            epochs=None if steps else epochs,
            val_fraction=val_fraction,
            device=device,
            resume=resume,
            overwrite=overwrite,
            callback=callback,
        )
    summary = {
        "model": str(result.model_dir),
        "steps": result.steps,
        "final_loss_avg": result.last_logs.get("loss_avg"),
        "best_validation": result.best,
    }
    typer.echo(json.dumps(summary, indent=2, default=str))
