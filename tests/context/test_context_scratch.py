"""The context stage keeps the cleaned membrane map of a large volume out of the process's
anonymous memory (an unlinked temporary memory map: 274 MB at the reference size)."""

from __future__ import annotations

import numpy as np

import synapseg.context.stage as stage


def test_a_large_cleaned_map_is_memory_mapped_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "SCRATCH_BYTES", 1000)
    assert stage._scratch_map((4, 10, 10), str(tmp_path)) is None  # small: a plain array
    out = stage._scratch_map((4, 20, 30), str(tmp_path))
    assert isinstance(out, np.memmap) and out.shape == (4, 20, 30) and out.dtype == np.uint8
    out[:] = 7
    assert int(out.sum()) == 7 * out.size
    assert list(tmp_path.iterdir()) == []  # unlinked at once; the map keeps its pages


def test_the_context_stage_cleans_into_the_scratch_map(monkeypatch):
    """run_context hands the scratch map to the cleaning as its output array."""
    import synapseg.context.membrane_mask as mm

    seen = {}
    real = mm.clean_membrane_map

    def spy(prob, vs, params, out=None):
        seen["out"] = out
        return real(prob, vs, params, out=out)

    monkeypatch.setattr(mm, "clean_membrane_map", spy)
    monkeypatch.setattr(stage, "SCRATCH_BYTES", 0)
    prob = np.zeros((8, 16, 16), np.uint8)
    prob[4, 2:14, 2:14] = 250  # one membrane sheet

    class Ctx:
        params = {"context": True, "scratch_dir": None, "docked_nm": 5.0, "proximal_nm": 45.0,
                  "layer_nm": 10.0, "cleft_nm": (15.0, 35.0)}  # fmt: skip
        facts: dict = {}

        def __getitem__(self, key):
            import pandas as pd

            from synapseg.core.grid import Grid

            return {
                "membrane_probabilities": prob,
                "grid": Grid(prob.shape, (2.0, 2.0, 2.0)),
                "vesicles": pd.DataFrame(),
            }[key]

    result = stage.run_context(Ctx())
    assert isinstance(seen["out"], np.memmap)
    assert result["membranes"] is not None and result["membranes"].shape == prob.shape
