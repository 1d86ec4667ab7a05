"""The README's two commands are the contract with newcomers and CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_has_the_two_commands_in_order():
    commands = readme_commands()
    assert len(commands) >= 2
    assert commands[0].endswith("synapseg demo")
    assert commands[1].endswith("pytest")


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"( {test_command} )" in ci
