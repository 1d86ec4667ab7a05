"""The npe2 manifest: valid, found through the package's entry point, every command importable."""

from __future__ import annotations

import importlib

import pytest

npe2 = pytest.importorskip("npe2")
pytest.importorskip("qtpy")


def test_manifest_is_valid_and_every_command_resolves():
    manifest = npe2.PluginManifest.from_distribution("synapseg")
    assert manifest.name == "synapseg"
    contributions = manifest.contributions
    assert contributions.readers and contributions.widgets and contributions.sample_data
    for command in contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id
    patterns = contributions.readers[0].filename_patterns
    assert {"*.mrc", "*.rec", "*.zarr", "*.csv", "*.star"} <= set(patterns)
