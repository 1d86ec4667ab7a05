"""Background imports (``synapseg._lazy.import_in_background``, issue 17)."""

from __future__ import annotations

import subprocess
import sys
import threading

from synapseg._lazy import import_in_background
from synapseg.cli import COMMANDS


def test_a_module_is_imported_in_another_thread(tmp_path, monkeypatch):
    (tmp_path / "slow_mod_a.py").write_text(
        "import threading\nTHREAD = threading.current_thread().name\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_mod_a", raising=False)
    thread = import_in_background("slow_mod_a")
    assert thread is not None
    thread.join(10)
    import slow_mod_a

    assert slow_mod_a.THREAD != threading.main_thread().name  # it ran in the background
    assert import_in_background("slow_mod_a") is None  # already imported: nothing to do


def test_a_failing_background_import_raises_where_the_module_is_used(tmp_path, monkeypatch):
    (tmp_path / "broken_mod_b.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    thread = import_in_background("broken_mod_b")
    thread.join(10)  # no exception escapes the thread
    assert "broken_mod_b" not in sys.modules
    try:
        import broken_mod_b  # noqa: F401
    except RuntimeError as e:
        assert "broken on purpose" in str(e)
    else:  # pragma: no cover - the import must fail
        raise AssertionError("the broken module imported")


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """``synapseg ARGS`` through the console script's entry point, in a fresh interpreter,
    then the list of command modules it imported (last line of stdout)."""
    code = (
        "import sys\n"
        "from synapseg.cli import run\n"
        "try:\n"
        f"    run({list(args)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('synapseg.commands.')\n"
        "             and m not in ('synapseg.commands.base', 'synapseg.commands.options')))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )


def test_the_console_script_imports_only_the_command_it_runs():
    """``synapseg -q segment ...`` registers segment alone (start-up without the other
    commands' imports, issue 17); help without a command lists every command."""
    out = _run_cli("-q", "segment", "--help")
    assert "--no-context" in out.stdout  # segment's own help
    assert out.stdout.strip().splitlines()[-1] == "['synapseg.commands.segment']"
    out = _run_cli("--help")
    for name in COMMANDS:
        assert f"synapseg.commands.{name}" in out.stdout.splitlines()[-1]
        assert name in out.stdout
    out = _run_cli("no-such-command")  # the error lists the real ones
    assert "synapseg.commands.evaluate" in out.stdout.splitlines()[-1]


def test_library_import_of_app_has_every_command():
    from typer.main import get_command

    from synapseg.cli import app

    assert set(get_command(app).commands) == set(COMMANDS)


def test_console_script_asks_torch_for_huge_pages_unless_told(monkeypatch, tmp_path):
    """``run`` sets THP_MEM_ALLOC_ENABLE=1 where the kernel offers transparent huge pages
    (not "[never]"), and keeps a value the user set."""
    import os

    import synapseg.cli as cli

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    fake = tmp_path / "enabled"
    real_path = cli.Path

    def path(p):
        return fake if str(p).endswith("transparent_hugepage/enabled") else real_path(p)

    monkeypatch.setattr(cli, "Path", path)
    fake.write_text("always [madvise] never\n")
    cli._huge_pages_for_torch()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    cli._huge_pages_for_torch()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"  # the user's choice stays
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    fake.write_text("always madvise [never]\n")
    cli._huge_pages_for_torch()
    assert "THP_MEM_ALLOC_ENABLE" not in os.environ
