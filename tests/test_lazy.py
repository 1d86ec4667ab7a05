"""Background imports (``synapseg._lazy.import_in_background``, issue 17)."""

from __future__ import annotations

import sys
import threading

from synapseg._lazy import import_in_background


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
