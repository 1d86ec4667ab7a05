"""docs/api.md runs: its ```python blocks are executed in order in an empty folder."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_api_walkthrough_runs(tmp_path, monkeypatch):
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 6, "the walkthrough lost its code"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_md"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
    for name in ("vesicles.csv", "vesicles.star", "vesicles.mrc", "slice.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(namespace["table"]) > 0  # the walkthrough found vesicles to show
