"""scripts/train_membranes.py: the recipes' networks and a fine-tune's starting weights agree."""

from __future__ import annotations

from synapseg.model.registry import load_model
from synapseg.model.unet import UNetConfig


def test_fine_tune_recipes_start_from_a_shipped_model_of_their_architecture(load_script):
    recipes = load_script("scripts/train_membranes.py").RECIPES
    names = [r["name"] for r in recipes.values()]
    assert len(set(names)) == len(names) and len({r["run"] for r in recipes.values()}) == len(names)
    tuned = [r for r in recipes.values() if r.get("init")]
    assert tuned, "v3 fine-tunes v2"
    for recipe in tuned:
        net, card = load_model(recipe["init"], device="cpu")
        mine = UNetConfig(**recipe["unet"])
        for key in ("stem", "base_channels", "depth", "out_channels"):
            assert getattr(card.config, key) == getattr(mine, key)
    for recipe in recipes.values():
        assert all(c in (0, 1) for c in recipe.get("fg_channels", (0, 1)))


def test_signed_distance_recipe_configures_its_targets_and_loss(load_script):
    """v4: channel 0's target is the clipped signed distance; the loss term uses the same
    tau and clip, so the logit the network learns is the one the target encodes."""
    import numpy as np

    from synapseg.train.membrane_targets import membrane_sd_targets
    from synapseg.train.membrane_trainer import DistanceLoss

    recipe = load_script("scripts/train_membranes.py").RECIPES["v4"]
    sd = recipe["signed_distance"]
    assert recipe["init"] == "sim-membrane-v3" and recipe["fg_channels"] == (0,)
    loss = DistanceLoss(weight=recipe["distance_weight"], **sd)
    assert (loss.tau_nm, loss.clip_nm) == (sd["tau_nm"], sd["clip_nm"]) and loss.weight > 0
    labels = np.zeros((8, 8, 40), np.uint8)
    labels[..., 18:23] = 3
    t = membrane_sd_targets(labels, 1.0, 2.4, **sd)
    assert t.shape[0] == 2 and (t[0] > 0.5).any() and not (t[1] > 0.5).any()
