"""scripts/train_default.py v2: the folders, negatives and rebuild reference of the recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synapseg.simulate.draws import draw_world


@pytest.fixture(scope="module")
def recipe(load_script):
    return load_script("scripts/train_default.py")


def test_v2_has_validation_lamellae_and_vesicle_free_gate_draws(recipe, tmp_path):
    folders = recipe.item_folders(tmp_path, "v2")
    sims = [n for n in folders if n.startswith("sim_")]
    negs = [n for n in folders if n.startswith("neg_")]
    assert len(sims) == recipe.N_TRAIN + recipe.VERSIONS["v2"]["n_val"] == 48
    assert len(negs) == recipe.VERSIONS["v2"]["n_neg"] == 4
    # negatives live outside the data folder's top level: load_data_config never trains on them
    assert all(folders[n].parent.name == recipe.NEG_DIR for n in negs)
    assert recipe.item_index("sim_012") == 12 and recipe.item_index("neg_001") == 1001
    val = [recipe.draw_params(i, "v2") for i in range(recipe.N_TRAIN, 48)]
    assert sum(p.lamella_thickness_nm is not None for p in val) >= 2
    neg = recipe.draw_params(recipe.item_index("neg_000"), "v2")
    assert neg.n_vesicles == 0
    # the negative is the same world: every other field is the draw of seeds [20261205, 1000]
    rng = np.random.default_rng([recipe.SEED_V2, 1000])
    base = draw_world(rng, recipe.XY_EXTENT_NM, recipe.Z_EXTENT_NM)
    assert base.n_vesicles is None and neg == base.replace(n_vesicles=0)


def test_rebuild_reference_keeps_the_validation_rows_up_to_the_check(recipe, tmp_path):
    rows = [
        {"step": 150, "loss": 1.0, "loss_avg": 1.1, "lr": 0.002, "val": {"f1": 0.0, "dice": 0.4}},
        {"step": 160, "loss": 0.9, "loss_avg": 1.0, "lr": 0.002},
        {"step": 300, "loss": 0.7, "loss_avg": 0.8, "val": {"f1": 0.2, "dice": 0.5}},
        {"step": 450, "loss": 0.6, "loss_avg": 0.7, "val": {"f1": 0.7, "dice": 0.6}},
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ref = recipe.rebuild_reference(history, 300)
    assert [r["step"] for r in ref] == [150, 300]
    assert ref[1] == {"step": 300, "loss_avg": 0.8, "val": {"f1": 0.2, "dice": 0.5}}


def test_train_and_check_pass_the_validation_method_on(recipe, tmp_path, monkeypatch):
    """``train --val-method post-nogate`` validates without the vesicle-free gate; ``check``
    rebuilds with the validation method recorded in the card's ``train_config`` (cards
    without one: ``post``, as every card so far), so the F1 it compares is the same kind."""
    from types import SimpleNamespace

    import synapseg.model.registry as registry

    seen = {}

    class Stop(Exception):
        pass

    def fake_build(*args):
        seen["val_method"] = args[8]
        raise Stop

    monkeypatch.setattr(recipe, "generate", lambda *a, **k: None)
    monkeypatch.setattr(recipe, "build_trainer", fake_build)
    for argv, want in (
        (["train"], "post"),
        (["train", "--val-method", "post-nogate"], "post-nogate"),
    ):
        with pytest.raises(Stop):
            recipe.main(["--version", "v2", "--cache", str(tmp_path), *argv])
        assert seen.pop("val_method") == want
    for cfg, want in (({}, "post"), ({"val_method": "post-nogate"}, "post-nogate")):
        base = {"steps": 10, "lr": 1e-3, "schedule": "constant", **cfg}
        card = SimpleNamespace(
            training_data={"rebuild_reference": [{"step": 1}], "train_config": base}
        )
        monkeypatch.setattr(registry, "resolve_model", lambda m: tmp_path / "model.json")
        monkeypatch.setattr(registry, "read_card", lambda p, card=card: card)
        with pytest.raises(Stop):
            recipe.main(["--version", "v2", "--cache", str(tmp_path), "check", "--model", "x"])
        assert seen.pop("val_method") == want
