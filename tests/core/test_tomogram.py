"""``segment_tomogram`` on the runner: reports of earlier versions, deleted outputs."""

from __future__ import annotations

import json

from synapseg.core.options import SegmentOptions
from synapseg.core.tomogram import segment_tomogram


def test_reports_without_artifacts_still_resume(tomo_file, tmp_path, fake_file_hooks):
    """A report written before the runner (no ``artifacts`` entry) resumes as it did."""
    out = tmp_path / "out"
    segment_tomogram(tomo_file, out, SegmentOptions(formats=("csv",)), hooks=fake_file_hooks)
    report_path = out / "syn_report.json"
    report = json.loads(report_path.read_text())
    report.pop("artifacts")
    report_path.write_text(json.dumps(report))
    again = segment_tomogram(
        tomo_file,
        out,
        SegmentOptions(formats=("csv",), from_stage="vesicles"),
        hooks=fake_file_hooks,
    )
    assert fake_file_hooks.calls == ["predict", "vesicles", "vesicles"]
    assert again["finished"] and again["n_vesicles"] == report["n_vesicles"]


def test_a_deleted_probability_map_is_recomputed_with_what_follows(
    tomo_file, tmp_path, fake_file_hooks
):
    out = tmp_path / "out"
    options = SegmentOptions(formats=("csv", "mod"))
    segment_tomogram(tomo_file, out, options, hooks=fake_file_hooks)
    (out / "syn_probabilities.mrc").unlink()
    (out / "syn_vesicles.mod").write_bytes(b"stale")
    report = segment_tomogram(tomo_file, out, options, hooks=fake_file_hooks)
    assert fake_file_hooks.calls == ["predict", "vesicles"] * 2
    assert (out / "syn_probabilities.mrc").exists() and report["finished"]
    assert (out / "syn_vesicles.mod").read_bytes() != b"stale"  # the exports were redone


def test_reports_after_each_stage_are_compact_and_the_finished_one_indented(
    tomo_file, tmp_path, fake_file_hooks, monkeypatch
):
    """The report rewritten after every stage (the resume state) is compact JSON, the
    finished report indented text; every one of them parses."""
    import synapseg.core.resume as resume_mod  # where the report is written

    written = []
    real = resume_mod.write_text_atomic

    def spy(path, text, overwrite=False):
        if str(path).endswith("_report.json"):
            written.append(text)
        return real(path, text, overwrite=overwrite)

    monkeypatch.setattr(resume_mod, "write_text_atomic", spy)
    out = tmp_path / "out"
    segment_tomogram(tomo_file, out, SegmentOptions(formats=("csv",)), hooks=fake_file_hooks)
    assert len(written) >= 3
    assert all("\n" not in text for text in written[:-1])
    assert written[-1].startswith('{\n  "') and json.loads(written[-1])["finished"]
    assert all(isinstance(json.loads(text), dict) for text in written)
    assert (out / "syn_report.json").read_text() == written[-1]
