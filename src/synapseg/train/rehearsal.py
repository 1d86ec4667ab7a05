"""Source rehearsal and weight anchoring for ``synapseg adapt`` (against forgetting).

Self-training on one kind of tomogram makes a network forget others (``sim-unet-v2``
adapted on small vesicles lost 0.46 F1 at a tenth of the SNR and found no vesicle on a
300 nm low-dose lamella). The field's standard answers, both here:

* **Rehearsal.** During fine-tuning a fraction of the patches (``--rehearsal``) comes from
  labeled tomograms simulated on the fly from the base model's own training world, with
  their exact labels (``vesicle_labels.mrc``). The world is read from the base card's
  ``training_data``: the v2 recipe's :func:`synapseg.simulate.draws.draw_world`, or v1's
  ``SimulationParams.random`` (:func:`base_world`). The draws use seeds
  ``default_rng([20261311, i])`` (:data:`REHEARSAL_SEED`), disjoint from every training
  recipe (``[20261125, i]``, ``[20261205, i]``, the confidence model's ``[20261203, i]``,
  ``[20261208, j]``, ``[20261263, k]``, the membrane model's ``[20261221, i]``) and every
  benchmark (domain shift ``[20261202, …]``, hard ``[20261231, …]``, hard-dev
  ``[20261232, …]``, membranes ``[20261222, i]``, context ``[20261402, i]``), on the
  recipe's volume (:data:`XY_EXTENT_NM` × :data:`Z_EXTENT_NM` nm, 5-25 s each; cached in
  :func:`cache_dir`, checked against the draw before reuse).
* **Anchoring** (L2-SP, Li et al. 2018): ``α · Σ (w − w_base)²`` over every parameter,
  pulling the fine-tuned weights towards the base model's (:func:`anchor_penalty`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

REHEARSAL_SEED = 20261311
XY_EXTENT_NM = 300.0  # the training recipe's (scripts/train_default.py): smaller volumes
Z_EXTENT_NM = (100.0, 150.0)  # hold few vesicles, and sim-unet-v2's gate empties many of them
PREFIX = "rehearsal_"


def cache_dir(world: str) -> Path:
    """Where the simulated rehearsal and held-in tomograms of ``world`` are kept:
    ``$SYNAPSEG_CACHE/adapt_<world>`` (default ``~/.cache/synapseg/adapt_<world>``)."""
    import os

    root = os.environ.get("SYNAPSEG_CACHE") or Path.home() / ".cache" / "synapseg"
    return Path(root) / f"adapt_{world}"


def base_world(training_data: dict[str, Any] | str | None) -> str:
    """The simulated world a base model was trained in: ``"v2"`` or ``"v1"``, from its
    card's ``training_data`` (``ModelCard.training_data``).

    ``"v2"`` when it names the v2 recipe or ``draw_world``; ``"v1"`` when it names
    ``scripts/train_default.py`` without ``--version v2``; any other model (a user's) gets
    ``"v2"``, the wider world.
    """
    data = training_data or {}
    text = json.dumps(data, default=str) if isinstance(data, dict) else str(data)
    if "--version v2" in text or "draw_world" in text:
        return "v2"
    if "train_default.py" in text:
        return "v1"
    return "v2"


def world_params(world: str, index: int, seed: int = REHEARSAL_SEED):
    """Simulation parameters of rehearsal tomogram ``index`` (``default_rng([seed, index])``).

    Parameters
    ----------
    world
        ``"v2"`` (:func:`synapseg.simulate.draws.draw_world`) or ``"v1"``
        (``SimulationParams.random``, the v1 recipe's draw).
    index
        Draw index.
    seed
        First seed entry (default :data:`REHEARSAL_SEED`).

    Returns
    -------
    SimulationParams
        On about :data:`XY_EXTENT_NM` × (:data:`Z_EXTENT_NM`) nm.
    """
    from synapseg.simulate import SimulationParams

    rng = np.random.default_rng([int(seed), int(index)])
    if world == "v2":
        from synapseg.simulate.draws import draw_world

        return draw_world(rng, xy_extent_nm=XY_EXTENT_NM, z_extent_nm=Z_EXTENT_NM)
    if world != "v1":
        raise ValueError(f"unknown world {world!r}")
    params = SimulationParams.random(rng)
    vs = params.voxel_size_nm
    z_nm = float(rng.uniform(*Z_EXTENT_NM))

    def even(nm: float) -> int:
        return max(16, int(round(nm / vs / 2)) * 2)

    return params.replace(shape=(even(z_nm), even(XY_EXTENT_NM), even(XY_EXTENT_NM)))


def _is_cached(sub: Path, params) -> bool:
    done = sub / "params.json"
    return done.is_file() and json.loads(done.read_text()) == _jsonable(params.to_dict())


def _simulate_into(sub: Path, params) -> None:
    """Simulate into a private folder, then move it into place in one rename, so that
    runs sharing the cache (two ``adapt`` jobs at once) never read or break each other's
    half-written tomograms."""
    from synapseg.simulate import simulate_tomogram
    from synapseg.simulate.writer import write_simulation

    sub.parent.mkdir(parents=True, exist_ok=True)
    tmp = sub.parent / f".{sub.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        write_simulation(tmp, simulate_tomogram(params, keep_phantom=False), overwrite=True)
        if _is_cached(sub, params):
            return  # another run finished the same draw first
        shutil.rmtree(sub, ignore_errors=True)  # a stale draw
        try:
            os.rename(tmp, sub)
        except OSError:
            if not _is_cached(sub, params):  # lost the race to a finished copy: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def simulate_set(
    folder: Path, world: str, n: int, seed: int = REHEARSAL_SEED, prefix: str = PREFIX
) -> list[dict[str, Any]]:
    """Simulate ``n`` labeled tomograms of ``world`` into ``folder/<prefix>XXX`` (cached:
    a folder whose ``params.json`` matches the draw is reused).

    Returns
    -------
    list of dict
        Per tomogram: ``folder``, ``seed`` (``[seed, i]``), ``simulation_seed``, ``shape``,
        ``voxel_size_nm``, ``snr``, ``n_vesicles``.
    """
    out = []
    for i in range(int(n)):
        params = world_params(world, i, seed)
        sub = Path(folder) / f"{prefix}{i:03d}"
        if not _is_cached(sub, params):
            _simulate_into(sub, params)
        n_ves = max(0, sum(1 for _ in open(sub / "vesicles.csv", encoding="utf-8")) - 1)
        out.append(
            {
                "folder": str(sub),
                "seed": [int(seed), i],
                "simulation_seed": int(params.seed),
                "shape": list(params.shape),
                "voxel_size_nm": float(params.voxel_size_nm),
                "snr": None if params.snr is None else float(params.snr),
                "n_vesicles": n_ves,
            }
        )
    return out


def _jsonable(d: dict[str, Any]) -> Any:
    return json.loads(json.dumps(d, default=str))


def rehearsal_items(records: Sequence[dict[str, Any]]) -> list:
    """Training items (exact labels, no mask) of :func:`simulate_set`'s tomograms."""
    from synapseg.train.data import DataItem

    return [
        DataItem(
            tomogram=Path(r["folder"]) / "tomogram.mrc",
            annotation=Path(r["folder"]) / "vesicle_labels.mrc",
        )
        for r in records
    ]


def volume_probabilities(
    names: Sequence[str], sizes: Sequence[int], rehearsal: set[str], fraction: float
) -> np.ndarray:
    """Probability of drawing each training volume: a share ``fraction`` for the rehearsal
    volumes (named in ``rehearsal``), the rest for the others, by size within each group.

    With no volume in one group, the other gets everything.
    """
    sizes = np.asarray(sizes, float)
    is_reh = np.array([n in rehearsal for n in names], bool)
    f = float(fraction) if is_reh.any() and (~is_reh).any() else float(is_reh.any())
    p = np.zeros(len(sizes))
    for group, share in ((is_reh, f), (~is_reh, 1.0 - f)):
        if group.any():
            p[group] = share * sizes[group] / sizes[group].sum()
    return p / p.sum()


def anchor_penalty(net: torch.nn.Module, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2-SP: ``Σ (w − w_ref)²`` over the parameters named in ``reference`` (0 at the base
    weights, growing quadratically away from them)."""
    total = torch.zeros(())
    for name, p in net.named_parameters():
        ref = reference.get(name)
        if ref is not None:
            total = total.to(p.device) + torch.sum((p - ref.to(p.device)) ** 2)
    return total


def base_parameters(from_model: str) -> dict[str, torch.Tensor]:
    """A detached copy of a model's parameters (the anchor)."""
    from synapseg.model.registry import load_model

    net, _ = load_model(from_model, device="cpu")
    return {k: v.detach().clone() for k, v in net.named_parameters()}
