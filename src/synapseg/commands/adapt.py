"""``synapseg adapt``: adapt a model to your own tomograms without labels (self-training)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import device_option, overwrite_option


@app.command()
@handle_errors
def adapt(
    ctx: typer.Context,
    tomograms: list[Path] = typer.Argument(
        ..., help="Tomogram file(s) or folder(s) of tomograms (no labels needed)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Model folder to write."),
    from_model: str = typer.Option(
        "default", "--from", help="Model to adapt: 'default', a name or a model folder."
    ),
    steps: int = typer.Option(40, "--steps", min=1, help="Fine-tuning steps per round."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Pseudo-label / fine-tune rounds."),
    min_confidence: float = typer.Option(
        0.8, "--min-confidence", help="Confidence of a vesicle to become a pseudo-label."
    ),
    low_confidence: float = typer.Option(
        0.0,
        "--low-confidence",
        help="Candidates below this are background (default 0: none); between: ignored.",
    ),
    ignore_probability: float = typer.Option(
        0.25,
        "--ignore-probability",
        help="Probability blobs no confident vesicle explains are ignored from this value up.",
    ),
    blob_margin_nm: float | None = typer.Option(
        None,
        "--blob-margin",
        help="Ignored shell around those blobs, nm (default: 4 nm, the candidates' margin).",
    ),
    lr: float = typer.Option(2e-4, "--lr", help="Learning rate (low: the base model is good)."),
    tta: bool = typer.Option(False, "--tta", help="Flip-averaged pseudo-labels (8-16x slower)."),
    adapt_post: bool = typer.Option(
        True,
        "--adapt-post/--no-adapt-post",
        help="Lower the size check's radius floor when the confident sizes are truncated at it.",
    ),
    check_gain: bool = typer.Option(
        False,
        "--check-gain/--no-check-gain",
        help="Keep the fine-tuned weights only if the last round finds at least 10 % more "
        "confident vesicles than the base model (off by default: with the batch-norm "
        "statistics frozen, dropped weights never cost another data set).",
    ),
    rehearsal: float = typer.Option(
        0.5,
        "--rehearsal",
        help="Share of the training patches from labeled tomograms simulated from the base "
        "model's training world (against forgetting; 0: off).",
    ),
    anchor: float = typer.Option(
        1.0, "--anchor", help="L2-SP weight: alpha * sum (w - w_base)^2 (0: off)."
    ),
    check_forgetting: bool = typer.Option(
        True,
        "--check-forgetting/--no-check-forgetting",
        help="Keep the fine-tuned weights only if they do not lose F1/recall on held-in "
        "simulated tomograms of the base model's world.",
    ),
    interpolate: float = typer.Option(
        0.5,
        "--interpolate",
        help="Write w_base + LAMBDA * (w_fine_tuned - w_base): keeps part of the gain, forgets "
        "less elsewhere (1: the fine-tuned weights as they are).",
    ),
    freeze_bn: bool = typer.Option(
        True,
        "--freeze-bn/--train-bn",
        help="Keep the base model's batch-norm statistics while fine-tuning (--train-bn: "
        "re-estimate them from the fine-tuning batches).",
    ),
    device: str = device_option(),
    seed: int = typer.Option(0, "--seed", help="Random seed (runs are reproducible on CPU)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Adapt a model to unlabeled tomograms: pseudo-label confident vesicles, fine-tune.

    Each round segments the tomograms, keeps vesicles with confidence >= --min-confidence as
    targets, ignores uncertain candidates (loss mask) and fine-tunes with a flip-consistency
    term, mixing in labeled simulated tomograms of the base model's world (--rehearsal).
    The fine-tuned weights are kept only if they do not lose on held-in simulated tomograms
    (--check-forgetting; --check-gain also asks for 10 % more confident vesicles than the
    base model); the size check's radius floor is lowered when the
    confident sizes are truncated at it (both recorded in the card). Writes OUTPUT/model.pt
    + model.json (use `segment --model OUTPUT`) and the pseudo-labels in
    OUTPUT/pseudo_labels/. No ground truth is used: check the result on a
    tomogram you know before trusting it.
    """
    import torch

    from synapseg.train.adapt import AdaptConfig, adapt_model

    if threads:
        torch.set_num_threads(threads)
    from synapseg import options as check

    check.check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = AdaptConfig(
        rounds=rounds,
        steps=steps,
        high_confidence=min_confidence,
        low_confidence=low_confidence,
        ignore_probability=ignore_probability,
        blob_margin_nm=blob_margin_nm,
        lr=lr,
        tta=tta,
        adapt_postprocessing=adapt_post,
        check_gain=check_gain,
        rehearsal=rehearsal,
        anchor_weight=anchor,
        check_forgetting=check_forgetting,
        interpolation=interpolate,
        freeze_batch_norm=freeze_bn,
        seed=seed,
    )
    quiet = bool((ctx.find_root().obj or {}).get("quiet"))
    t0 = time.perf_counter()

    def say(text: str) -> None:
        if not quiet:
            err_console.print(f"adapt: {text} ({time.perf_counter() - t0:.0f} s)", markup=False)

    record = adapt_model(
        tomograms,
        output,
        from_model=from_model,
        config=config,
        device=device,
        overwrite=overwrite,
        on_event=say,
    )
    summary = {
        "model": str(output),
        "statement": record["statement"],
        "base_model": record["base_model"],
        "pseudo_labels_per_round": [r["pseudo_labels"] for r in record["rounds"]],
        "weights": record["weights"]["decision"],
        "forgetting": (record.get("forgetting") or {}).get("decision", "not checked"),
        "postprocessing": (record.get("postprocessing_adapted") or {}).get("decision", "off"),
        "cut_offs": {"min_confidence": min_confidence, "low_confidence": low_confidence},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    typer.echo(json.dumps(summary, indent=2, default=str))
