"""Suite-wide test helpers.

``load_script`` imports a repository script (``scripts/``, ``benchmarks/``) as a module.

``@pytest.mark.reference("NAME")`` marks a test that needs the real reference files in
``../shared/reference/NAME`` (beside the repository, not part of it). Without them the test
is skipped with a reason that says what is missing and why.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
REFERENCE_WHAT = {
    "pyto-presynaptic-example": "a real Pyto presynaptic segmentation with Pyto's own tables",
    "real-header-crop": "crops of real IMOD/MRC files with their original headers",
}


def reference_skip_reason(name: str) -> str:
    """Why a test needing ``../shared/reference/<name>`` is skipped."""
    what = REFERENCE_WHAT.get(name, "real reference files")
    return (
        f"real reference data absent: ../shared/reference/{name} ({what}) is not in this "
        "checkout; it is reference material kept beside the repository, not part of the "
        "package, so this check against real data is skipped"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reference(name): needs ../shared/reference/<name> (real data); skipped with the "
        "reason when it is absent",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("reference")
        if marker is None:
            continue
        name = marker.args[0] if marker.args else ""
        if not (REFERENCE_DIR / name).is_dir():
            item.add_marker(pytest.mark.skip(reason=reference_skip_reason(name)))


@pytest.fixture(scope="session")
def load_script():
    """``load_script("scripts/train_default.py")``: that file, imported as a module."""

    def load(relative: str) -> ModuleType:
        path = REPO / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def released(monkeypatch):
    """``released(module)`` spies on ``module.release_in_background``: returns a function
    that waits for the release threads and gives weak references to every array handed
    over (dead once the thread dropped the last reference)."""
    import weakref

    from synapseg.io import scratch

    handed, threads = [], []

    def spy(arrays):
        handed.extend(weakref.ref(a) for a in arrays)
        threads.append(scratch.release_in_background(arrays))
        return threads[-1]

    def watch(module):
        monkeypatch.setattr(module, "release_in_background", spy)

        def wait() -> list:
            for thread in threads:
                thread.join(30)
            return handed

        return wait

    return watch
