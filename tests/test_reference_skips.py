"""Tests needing ../shared/reference say what is skipped and why (tests/conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_missing_reference_data_skips_with_an_explanation(tmp_path):
    project = tmp_path / "checkout" / "tests"  # no ../shared/reference beside this copy
    project.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), project / "conftest.py")
    (project / "test_uses_reference.py").write_text(
        "import pytest\n\n\n"
        '@pytest.mark.reference("pyto-presynaptic-example")\n'
        "def test_real():\n    raise AssertionError('must not run')\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = " ".join(run.stdout.split())  # -rs wraps long reasons
    assert run.returncode == 0 and "1 skipped" in out, run.stdout + run.stderr
    for words in ("../shared/reference/pyto-presynaptic-example", "a real Pyto", "not part of"):
        assert words in out, run.stdout
