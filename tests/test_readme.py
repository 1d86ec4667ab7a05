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


FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for python: no torch, pip only records what it was asked
echo "$*" >> "$FAKE_LOG"
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  case "$*" in *torch==*) exit "${FAIL_TORCH:-0}";; esac
  exit 0
fi
case "$2" in "import torch") exit 1;; *synapseg*) echo 9.9-test; exit 0;; esac
exec python3 "$@"
"""


def _run_install(tmp_path: Path, *args: str, fail_torch: bool = False):
    import os
    import subprocess

    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    bin_dir = tmp_path / "bin"  # PATH without nvidia-smi: the CPU branch
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "dirname", "python3"):
        target = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(target)
    env = {
        **os.environ,
        "PYTHON": str(fake),
        "FAKE_LOG": str(tmp_path / "pip.log"),
        "FAIL_TORCH": "1" if fail_torch else "0",
        "PATH": str(bin_dir),
    }
    result = subprocess.run(
        ["bash", str(ROOT / "install.sh"), *args], env=env, capture_output=True, text=True
    )
    return result, (tmp_path / "pip.log").read_text()


def test_install_sh_says_what_it_does_one_line_per_step(tmp_path):
    result, calls = _run_install(tmp_path, "test")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("install.sh: ") for line in lines) and 4 <= len(lines) <= 6
    assert "CPU-only torch" in result.stdout and "'test' extras" in result.stdout
    assert "done: synapseg 9.9-test" in lines[-1]
    assert "pip install --quiet torch==2.13.0" in calls and "-e .[test]" in calls


def test_install_sh_falls_back_when_no_cpu_torch_wheel_is_at_hand(tmp_path):
    result, calls = _run_install(tmp_path, fail_torch=True)
    assert result.returncode == 0, result.stderr
    assert "pip will choose torch" in result.stdout
    assert calls.strip().splitlines()[-3].endswith("pip install --quiet -e .")
