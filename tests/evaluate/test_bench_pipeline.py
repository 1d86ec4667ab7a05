"""The accuracy benchmark's table and its docs/benchmarks.md section (no pipeline run)."""

from __future__ import annotations


def _metrics(tp, fp, fn):
    return {
        "n_gt": tp + fn,
        "n_pred": tp + fp,
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "f_beta": {"1": 0.5, "4": 0.6},
        "center_error_nm": {"median": 1.25},
        "radius_error_nm": {"median_signed": -0.5},
        "voxel": {"dice": 0.8},
    }


RESULT = {
    "tomograms": {
        "sim_000": {
            "metrics": _metrics(8, 2, 2),
            "simulate": {"seconds": 3.0},
            "segment": {
                "seconds": 5.0,
                "peak_rss_mb": 400.0,
                "stage_seconds": {"predict": 2, "vesicles": 2, "export": 1},
            },
            "mvoxel_per_s": 0.8,
            "vs_yardstick": 12.0,
        }
    },
    "pooled": _metrics(8, 2, 2),
    "config": {
        "command": "python benchmarks/bench_pipeline.py",
        "date": "2026-11-25",
        "machine": "test",
        "n": 1,
        "seeds": [1000],
        "shape": [64, 256, 256],
        "voxel_size_nm": 1.68,
        "model": "m",
        "match_fraction": 0.5,
    },
}


def test_markdown_table_and_docs_section_replacement(tmp_path, monkeypatch, load_script):
    bench = load_script("benchmarks/bench_pipeline.py")
    text = bench.markdown(RESULT)
    assert text.startswith("## Pipeline accuracy\n")
    assert "| sim_000 | 10 | 10 | 0.800 | 0.800 | 0.800 | 0.600 | 1.25 | -0.50 | 0.800 |" in text
    assert "5.0 (2.0/2.0/1.0)" in text and "**pooled**" in text
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\n## I/O\n\nio table\n\n## Pipeline accuracy\n\nold\n\n## Z\n\nz\n"
    )
    monkeypatch.setattr(bench, "DOCS", doc)
    bench.update_docs(text)
    new = doc.read_text()
    assert "old" not in new and "io table" in new and new.endswith("## Z\n\nz\n")
    assert new.count("## Pipeline accuracy") == 1
    bench.update_docs(text)  # idempotent
    assert doc.read_text() == new
