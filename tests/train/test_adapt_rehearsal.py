"""``synapseg adapt`` against forgetting: rehearsal data, L2-SP anchoring, the forgetting guard."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from synapseg.train import forgetting, rehearsal

from .conftest import table_as_pseudo_labels

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rehearsal_and_held_in_seeds_are_disjoint_from_training_and_benchmarks():
    recipe = _load(REPO / "scripts" / "train_default.py")
    used = {recipe.SEED, recipe.SEED_V2}
    used |= {20261203, 20261208, 20261263}  # confidence model (scripts/train_confidence.py)
    used |= {20261221, 20261222, 20261402}  # membrane model, membrane and context benchmarks
    used |= {20261202, 20261231, 20261232}  # domain shift, hard, hard-dev
    for script in ("train_confidence.py", "train_membranes.py"):
        text = (REPO / "scripts" / script).read_text()
        assert str(rehearsal.REHEARSAL_SEED) not in text
        assert str(forgetting.HELD_IN_SEED) not in text
    for bench in (REPO / "benchmarks").glob("*.py"):
        text = bench.read_text()
        assert str(rehearsal.REHEARSAL_SEED) not in text, bench
        assert str(forgetting.HELD_IN_SEED) not in text, bench
    ours = {rehearsal.REHEARSAL_SEED, forgetting.HELD_IN_SEED}
    assert len(ours) == 2 and not ours & used
    # the draws differ from the recipe's draws of the same index
    for i in range(3):
        assert rehearsal.world_params("v2", i).seed != recipe.draw_params(i, "v2").seed
        assert rehearsal.world_params("v1", i).seed != recipe.draw_params(i, "v1").seed


def test_base_world_follows_the_card():
    from synapseg.model.registry import read_card, resolve_model

    def training_data(name):
        return read_card(resolve_model(name)).training_data

    assert rehearsal.base_world(training_data("sim-unet-v2")) == "v2"
    assert rehearsal.base_world(training_data("sim-unet-v1")) == "v1"
    assert rehearsal.base_world("my own tomograms") == "v2"


def test_rehearsal_data_are_labeled_and_cached(tmp_path, monkeypatch):
    from synapseg.io.tables import read_table_csv
    from synapseg.io.volume import read_volume

    # small volumes for the test (the module's 160 nm would take seconds)
    monkeypatch.setattr(rehearsal, "XY_EXTENT_NM", 80.0)
    monkeypatch.setattr(rehearsal, "Z_EXTENT_NM", (50.0, 60.0))
    records = rehearsal.simulate_set(tmp_path, "v1", 1)
    (rec,) = records
    assert rec["seed"] == [rehearsal.REHEARSAL_SEED, 0]
    folder = Path(rec["folder"])
    labels = np.asarray(read_volume(folder / "vesicle_labels.mrc").data)
    table = read_table_csv(folder / "vesicles.csv")
    assert rec["n_vesicles"] == len(table) > 0
    assert len(np.unique(labels)) - 1 == len(table)  # every vesicle has its exact label
    (item,) = rehearsal.rehearsal_items(records)
    assert item.annotation == folder / "vesicle_labels.mrc" and item.mask is None
    stamp = (folder / "tomogram.mrc").stat().st_mtime_ns
    assert rehearsal.simulate_set(tmp_path, "v1", 1) == records  # cached: same draw, reused
    assert (folder / "tomogram.mrc").stat().st_mtime_ns == stamp


def test_a_concurrent_run_that_finished_first_is_kept(tmp_path, monkeypatch):
    """Two adapt jobs sharing the cache: the later one neither rewrites nor breaks the
    finished copy (they wrote the same temporary files in turn before)."""
    import synapseg.simulate as sim

    monkeypatch.setattr(rehearsal, "XY_EXTENT_NM", 80.0)
    monkeypatch.setattr(rehearsal, "Z_EXTENT_NM", (50.0, 60.0))
    real, finished = sim.simulate_tomogram, []

    def racing(params, **kw):
        result = real(params, **kw)
        if not finished:  # the other job completes the same draw meanwhile
            finished.append(None)
            (other,) = rehearsal.simulate_set(tmp_path, "v1", 1)
            finished.append((Path(other["folder"]) / "tomogram.mrc").stat().st_mtime_ns)
        return result

    monkeypatch.setattr(sim, "simulate_tomogram", racing)
    (rec,) = rehearsal.simulate_set(tmp_path, "v1", 1)
    folder = Path(rec["folder"])
    assert (folder / "tomogram.mrc").stat().st_mtime_ns == finished[1]
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no private folder left


def test_volume_probabilities_give_rehearsal_its_share():
    p = rehearsal.volume_probabilities(["u1", "u2", "r1"], [100, 300, 50], {"r1"}, 0.5)
    assert p == pytest.approx([0.125, 0.375, 0.5])
    assert rehearsal.volume_probabilities(["u1"], [10], {"r"}, 0.5) == pytest.approx([1.0])
    assert rehearsal.volume_probabilities(["r"], [10], {"r"}, 0.3) == pytest.approx([1.0])


def _net():
    from synapseg.model.unet import UNetConfig, build_unet

    return build_unet(UNetConfig(base_channels=4, depth=2), seed=0)


def test_anchor_is_zero_at_the_base_weights_and_grows_away():
    net = _net()
    ref = {k: v.detach().clone() for k, v in net.named_parameters()}
    assert float(rehearsal.anchor_penalty(net, ref).detach()) == 0.0
    values = []
    for eps in (0.01, 0.02, 0.04):
        moved = _net()
        with torch.no_grad():
            for p in moved.parameters():
                p.add_(eps)
        values.append(float(rehearsal.anchor_penalty(moved, ref)))
    assert 0 < values[0] < values[1] < values[2]
    assert values[1] / values[0] == pytest.approx(4.0, rel=1e-3)  # quadratic


def test_trainer_mixes_rehearsal_patches_and_anchors(toy_data):
    from synapseg.train.consistency import ConsistencyTrainer
    from synapseg.train.data import load_data_config, prepare_item
    from synapseg.train.trainer import TrainConfig

    items = load_data_config(toy_data)
    vols = [prepare_item(it, (2.0, 2.0, 2.0)) for it in items]
    net = _net()
    ref = {k: v.detach().clone() for k, v in net.named_parameters()}
    cfg = TrainConfig(steps=2, batch_size=1, patch_size=(16, 32, 32), lr=1e-2, warmup_steps=1)
    trainer = ConsistencyTrainer(
        net, cfg, vols, [], (2.0,) * 3, toy_data.parent / "w",
        rehearsal={vols[2].name}, rehearsal_fraction=0.6, anchor=ref, anchor_weight=1.0,
    )  # fmt: skip
    assert trainer.sampler._vol_p[2] == pytest.approx(0.6)
    rng = np.random.default_rng(0)
    picks = [trainer.sampler.corner(rng)[0] for _ in range(400)]
    assert np.mean(np.array(picks) == 2) == pytest.approx(0.6, abs=0.08)
    logs = trainer.train_step()
    assert logs["anchor"] == 0.0  # at the base weights before the first update
    logs = trainer.train_step()
    assert logs["anchor"] > 0.0


def test_forgetting_decision_tolerances():
    base = {"f1": 0.90, "recall": 0.90}
    ok = forgetting.forgetting_decision(base, {"f1": 0.895, "recall": 0.885})
    assert ok["kept"] and "pass" in ok["decision"]
    worse = forgetting.forgetting_decision(base, {"f1": 0.88, "recall": 0.90})
    assert not worse["kept"] and "dropped" in worse["decision"]
    missed = forgetting.forgetting_decision(base, {"f1": 0.90, "recall": 0.87})
    assert not missed["kept"]


def _damaged_model(base_dir: Path, out: Path) -> Path:
    """The base model with its output bias at -30: it sees no vesicle anywhere."""
    from synapseg.model.registry import sha256_file

    shutil.copytree(base_dir, out)
    card = json.loads((out / "model.json").read_text())
    weights = out / str(card.get("weights_file") or "model.pt")
    state = torch.load(weights, map_location="cpu", weights_only=False)
    last_bias = [k for k in state if k.endswith("bias")][-1]
    state[last_bias] = torch.full_like(state[last_bias], -30.0)
    torch.save(state, weights)
    card["sha256"] = sha256_file(weights)
    (out / "model.json").write_text(json.dumps(card))
    return out


@pytest.mark.slow
def test_the_guard_drops_a_model_that_lost_on_the_held_in_set(tmp_path, monkeypatch):
    """Real pipeline on one small held-in tomogram, base vs a deliberately damaged model."""
    from synapseg.model.registry import load_model, resolve_model

    from .conftest import write_item

    base_dir = resolve_model("default").parent
    damaged = _damaged_model(base_dir, tmp_path / "damaged")
    load_model(str(damaged))  # a valid model folder
    toy = write_item(tmp_path / "held" / "held_in_000", seed=2, n=6, shape=(48, 80, 80))

    def toy_set(folder, world, n, seed=None, prefix=None):
        return [{"folder": str(toy), "seed": [seed, 0]}]

    monkeypatch.setattr(forgetting, "simulate_set", toy_set)
    same = forgetting.check_forgetting("default", "default", tmp_path / "g1", "v1", 1)
    assert same["kept"] and same["base"] == same["adapted"] and same["base"]["tp"] > 0
    bad = forgetting.check_forgetting("default", str(damaged), tmp_path / "g2", "v1", 1)
    assert not bad["kept"] and bad["adapted"]["recall"] < bad["base"]["recall"]
    assert bad["held_in"][0]["seed"] == [forgetting.HELD_IN_SEED, 0]


@pytest.mark.parametrize("kept", [True, False])
def test_adapt_model_records_rehearsal_and_the_guard(tmp_path, monkeypatch, kept):
    """Fast: pipeline, simulator and guard scores replaced; one step per round."""
    from synapseg.model.registry import load_model, read_card, resolve_model
    from synapseg.train import adapt, adapt_post

    from .conftest import write_item

    monkeypatch.setattr(adapt, "label_tomogram", table_as_pseudo_labels)
    monkeypatch.setattr(
        adapt_post, "probe_radii",
        lambda t, s, c: {"radii_nm": [13.0, 16.0, 19.0], "current_min_radius_nm": 10.0},
    )  # fmt: skip
    sims = []

    def toy_set(folder, world, n, seed=rehearsal.REHEARSAL_SEED, prefix=rehearsal.PREFIX):
        sims.append((world, n, seed))
        out = []
        for i in range(n):
            sub = write_item(Path(folder) / f"{prefix}{i:03d}", seed=10 + i, shape=(40, 64, 64))
            out.append({"folder": str(sub), "seed": [seed, i], "n_vesicles": 6})
        return out

    scores = []

    def score(model, folders, out, device="cpu"):
        scores.append(model)
        bad = not kept and len(scores) == 2  # the adapted model is scored second
        recall = 0.5 if bad else 0.9
        f1 = 0.64 if bad else 0.9
        return {"n_gt": 10, "n_pred": 10, "tp": 5, "precision": 0.9, "recall": recall, "f1": f1}

    monkeypatch.setenv("SYNAPSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(rehearsal, "simulate_set", toy_set)
    monkeypatch.setattr(forgetting, "simulate_set", toy_set)
    monkeypatch.setattr(forgetting, "score_model", score)
    tomo = write_item(tmp_path / "toy", seed=1, shape=(40, 64, 64)) / "tomogram.mrc"
    config = adapt.AdaptConfig(
        rounds=2, steps=1, patch_size=(32, 32, 32), seed=5, rehearsal_tomograms=2,
        held_in_tomograms=1, anchor_weight=0.1, check_gain=False,  # equal toy counts
    )  # fmt: skip
    adapt.adapt_model([tomo], tmp_path / "a", from_model="sim-unet-v1", config=config)
    assert sims == [("v1", 2, rehearsal.REHEARSAL_SEED), ("v1", 1, forgetting.HELD_IN_SEED)]
    assert scores == ["sim-unet-v1", str(tmp_path / "a")]
    net, card = load_model(str(tmp_path / "a"))
    rec = card.extra["adaptation"]
    assert rec["rehearsal"]["fraction"] == 0.5 and rec["rehearsal"]["world"] == "v1"
    assert (tmp_path / "cache" / "adapt_v1" / "rehearsal_001").is_dir()
    assert [t["seed"] for t in rec["rehearsal"]["tomograms"]] == [[20261311, 0], [20261311, 1]]
    assert rec["anchor"]["alpha"] == 0.1 and rec["config"]["anchor_weight"] == 0.1
    assert rec["forgetting"]["kept"] is kept and rec["forgetting"]["rule"] == forgetting.RULE
    assert rec["forgetting"]["held_in"][0]["seed"] == [forgetting.HELD_IN_SEED, 0]
    assert rec["weights"]["kept"] is kept
    base_sha = read_card(resolve_model("sim-unet-v1")).sha256
    assert (card.sha256 == base_sha) is (not kept)
    assert "Rehearsal: 0.5 of the patches" in card.description
    if not kept:
        assert "they forgot" in card.description
