"""The pipeline stays a thin wrapper around the core (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import synapseg

SRC = Path(synapseg.__file__).parent


def test_pipeline_is_thin_and_core_modules_are_small():
    assert len((SRC / "pipeline.py").read_text().splitlines()) < 150
    for path in sorted((SRC / "core").glob("*.py")):
        assert len(path.read_text().splitlines()) < 400, path.name


def test_units_depend_on_numpy_only():
    """io imports synapseg.core.units: it must not pull the rest of the core in."""
    tree = ast.parse((SRC / "core" / "units.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= {"__future__", "collections", "numpy"}, imported
