"""``synapseg adapt``'s pseudo-labelling run: what it asks of the pipeline (issue 11, H1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synapseg.train.adapt import AdaptConfig


class _Stop(Exception):
    pass


def test_label_run_skips_the_synapse_context(monkeypatch, tmp_path):
    """The context (membranes, AZ, filaments) adds columns and never changes a vesicle, so
    the pseudo-labelling segment runs without it (it cost most of a round's time)."""
    import synapseg.pipeline as pipeline
    from synapseg.train.pseudo_labels import label_tomogram

    seen = {}

    def fake(tomogram, out, options):
        seen["options"] = options
        raise _Stop

    monkeypatch.setattr(pipeline, "segment_tomogram", fake)
    config = AdaptConfig(low_confidence=0.1, high_confidence=0.7)
    with pytest.raises(_Stop):
        label_tomogram(Path("t.mrc"), tmp_path / "lab", "default", config)
    options = seen["options"]
    assert options.context is False
    assert options.min_confidence == 0.1 and options.model == "default"
