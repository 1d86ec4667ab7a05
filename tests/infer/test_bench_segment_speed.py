"""benchmarks/bench_segment_speed.py makes (once) and takes the random volume of issue 17's
"65-69 s" baseline (``--random ZxYxX --voxel-size NM``)."""

from __future__ import annotations

import numpy as np
import pytest


def test_random_tomogram_is_written_once_at_the_voxel_size(load_script, tmp_path):
    import synapseg

    bench = load_script("benchmarks/bench_segment_speed.py")
    path = bench.random_tomogram("6x16x24", 1.469, tmp_path)
    vol = synapseg.read_volume(path)
    assert vol.shape == (6, 16, 24) and vol.data.dtype == np.float32
    assert np.allclose(vol.voxel_size_nm, 1.469, atol=1e-4)
    assert abs(float(np.std(vol.data)) - 1.0) < 0.1  # standard normal
    stamp = path.stat().st_mtime_ns
    assert bench.random_tomogram("6x16x24", 1.469, tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # taken, not rewritten
    with pytest.raises(SystemExit):
        bench.main(["--baseline-src", str(tmp_path)])  # neither a tomogram nor --random
