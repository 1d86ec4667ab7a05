"""Candidate splitting in forked processes and sphere fits in threads (issue 17) give
exactly the single-worker result."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.post.instances import candidate_instances


def _balls_map(seed: int) -> np.ndarray:
    """A uint8 map of balls (radius 8-12 voxels), many touching, plus specks."""
    rng = np.random.default_rng(seed)
    shape = (48, 128, 128)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    prob = np.zeros(shape, np.float32)
    for _ in range(40):
        c = rng.uniform((10, 10, 10), np.array(shape) - 10)
        r = rng.uniform(8, 12)
        d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        prob = np.maximum(prob, np.clip(1.2 - np.sqrt(d2) / r, 0, 1))
    prob[rng.random(shape) > 0.9995] = 1.0  # specks
    return np.rint(prob * 255).astype(np.uint8)


def test_threads_give_the_single_thread_candidates():
    prob = _balls_map(7)
    one = candidate_instances(prob, 1.5, workers=1)
    two = candidate_instances(prob, 1.5, workers=2)
    assert len(one) > 10 and one.n_split > 0 and one.n_specks > 0  # the map exercises all paths
    assert np.array_equal(one.centers_px, two.centers_px)
    assert np.array_equal(one.inscribed_radius_nm, two.inscribed_radius_nm)
    assert np.array_equal(one.score, two.score)
    assert (one.n_split, one.n_specks, one.n_components) == (
        two.n_split,
        two.n_specks,
        two.n_components,
    )
    assert one.rejected.equals(two.rejected)


def test_sphere_fits_in_threads_equal_one_thread(monkeypatch):
    from synapseg.post import parallel
    from synapseg.post.spheres import SphereParams, refine_spheres
    from synapseg.simulate import SimulationParams, simulate_tomogram

    sim = simulate_tomogram(SimulationParams(seed=3, shape=(48, 128, 128)))
    v = sim.vesicles
    centers = v[["center_z_px", "center_y_px", "center_x_px"]].to_numpy() + 0.7
    params = SphereParams(chunk=4, polish_directions=0)  # several chunks, quick
    fits = {}
    for workers in (1, 2):
        monkeypatch.setattr(parallel, "WORKERS", workers)
        fits[workers] = refine_spheres(
            sim.tomogram, centers, v["radius_nm"].to_numpy(), 1.68, params=params
        )
    assert len(fits[1]) == len(v) > 8
    assert fits[1].equals(fits[2])


def test_map_ordered_keeps_order_and_raises():
    from synapseg.post.parallel import map_ordered

    assert map_ordered(lambda x: x * x, range(50), workers=2) == [x * x for x in range(50)]
    with pytest.raises(ZeroDivisionError):
        map_ordered(lambda x: 1 / (x - 7), range(10), workers=2)


def test_labels_in_a_temporary_file_give_the_same_candidates(monkeypatch, tmp_path):
    import tempfile

    from synapseg.post import instances

    prob = _balls_map(11)
    in_memory = candidate_instances(prob, 1.5)
    monkeypatch.setattr(instances, "LABELS_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mapped = candidate_instances(prob, 1.5)
    assert len(in_memory) > 10 and np.array_equal(in_memory.centers_px, mapped.centers_px)
    assert np.array_equal(in_memory.score, mapped.score)
    assert list(tmp_path.iterdir()) == []  # the labels file was removed


def test_map_ordered_in_forked_processes_keeps_order_and_errors():
    import os

    from synapseg.post import parallel

    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("the platform cannot fork")
    if parallel.available_cores() < 2:
        pytest.skip("one core: map_ordered runs in this process")
    offset = 10  # a closure: the children inherit it by the fork
    out = parallel.map_ordered(lambda x: (x + offset, os.getpid()), range(50), 2, processes=True)
    assert [v for v, _ in out] == list(range(10, 60))
    assert os.getpid() not in {pid for _, pid in out}  # the work ran in the children
    with pytest.raises(ZeroDivisionError):
        parallel.map_ordered(lambda x: 1 / (x - 3), range(6), 2, processes=True)


def _double_in_a_daemon(queue) -> None:
    from synapseg.post import parallel

    queue.put(parallel.map_ordered(lambda x: 2 * x, range(8), 2, processes=True))


def test_map_ordered_in_a_daemonic_process_uses_threads():
    """A daemonic process (a dask worker) may not have children: threads, no error."""
    import multiprocessing

    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    queue = context.Queue()
    proc = context.Process(target=_double_in_a_daemon, args=(queue,), daemon=True)
    proc.start()
    try:
        assert queue.get(timeout=60) == [2 * x for x in range(8)]
    finally:
        proc.join(timeout=10)


def test_map_ordered_outside_the_main_thread_uses_threads():
    """Two threads mapping at once (dask worker threads of an in-process cluster) each get
    their own results: no fork from a thread."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from synapseg.post import parallel

    def run(k: int) -> list:
        return parallel.map_ordered(lambda x: (k * x, os.getpid()), range(40), 2, processes=True)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(run, (1, 3))
    assert [v for v, _ in a] == list(range(40)) and [v for v, _ in b] == [3 * x for x in range(40)]
    assert {pid for _, pid in a + b} == {os.getpid()}


def test_the_labels_map_is_released_by_a_background_thread(monkeypatch, tmp_path, released):
    """The labels' map is handed to ``release_in_background`` with no other reference left
    (its unmapping waits for writeback): once that thread is done, it is gone."""
    import tempfile

    from synapseg.post import instances

    monkeypatch.setattr(instances, "LABELS_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    wait = released(instances)
    assert len(candidate_instances(_balls_map(11), 1.5)) > 10
    handed = wait()
    assert len(handed) == 1 and handed[0]() is None  # the thread dropped the last reference
