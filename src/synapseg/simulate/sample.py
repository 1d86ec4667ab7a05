"""The demo sample tomogram (not shipped): generated deterministically on first use, then cached.

Nothing is stored in the package: the sample is simulated (a few seconds, offline) into
``$SYNAPSEG_CACHE`` (default ``$XDG_CACHE_HOME/synapseg`` or ``~/.cache/synapseg``) and
reused afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from synapseg import __version__
from synapseg.errors import InputError
from synapseg.simulate.params import SimulationParams
from synapseg.simulate.simulator import simulate_tomogram
from synapseg.simulate.writer import OUTPUT_FILES, write_simulation

log = logging.getLogger(__name__)

SAMPLE_VERSION = 2
SAMPLE_PARAMS = SimulationParams(
    shape=(64, 256, 256), voxel_size_nm=1.68, seed=2024, vesicle_density_per_um3=4000.0
)


def cache_dir() -> Path:
    """The synapseg cache folder (``$SYNAPSEG_CACHE``, else the XDG cache, else ~/.cache)."""
    env = os.environ.get("SYNAPSEG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "synapseg"


def _sample_key() -> str:
    """Short hash of the sample's parameters and the synapseg version (stale caches are
    never reused after an upgrade or a change of defaults)."""
    text = json.dumps({"params": SAMPLE_PARAMS.to_dict(), "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def sample_path() -> Path:
    """Folder holding the sample (``tomogram.mrc``, ``vesicles.csv``, labels, ``params.json``).

    Simulated on the first call (≈ 64 × 256 × 256 voxels at 1.68 nm, a few seconds);
    later calls return the cached folder at once.

    Raises
    ------
    InputError
        The cache folder cannot be written (set ``SYNAPSEG_CACHE`` to a writable folder).
    """
    target = cache_dir() / f"sample-v{SAMPLE_VERSION}-{_sample_key()}"
    if all((target / name).is_file() for name in OUTPUT_FILES):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".sample-", dir=target.parent))
    except OSError as exc:
        raise InputError(
            target.parent,
            f"cannot write the sample cache ({exc.strerror})",
            "set SYNAPSEG_CACHE to a writable folder",
        ) from exc
    try:
        log.info("simulating the sample tomogram into %s", target)
        write_simulation(tmp, simulate_tomogram(SAMPLE_PARAMS, keep_phantom=False))
        if target.exists():  # an incomplete earlier attempt
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not all((target / name).is_file() for name in OUTPUT_FILES):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
