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
