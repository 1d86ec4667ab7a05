import pandas as pd

from synapseg.io.volume import read_volume
from synapseg.simulate import sample_path
from synapseg.simulate.sample import cache_dir


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNAPSEG_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SYNAPSEG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "synapseg"


def test_sample_is_generated_once_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNAPSEG_CACHE", str(tmp_path))
    folder = sample_path()
    vol = read_volume(folder / "tomogram.mrc")
    assert 64 <= vol.shape[0] <= 96 and vol.shape[1:] == (256, 256)
    assert 1.4 <= vol.voxel_size_nm[0] <= 1.7
    assert 30 <= len(pd.read_csv(folder / "vesicles.csv")) <= 80
    stamp = (folder / "tomogram.mrc").stat().st_mtime_ns
    assert sample_path() == folder
    assert (folder / "tomogram.mrc").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary leftovers
