"""Sample data for napari: the simulated synapse of ``synapseg demo`` (generated on first use)."""

from __future__ import annotations

from synapseg.napari.layers import LayerData, tomogram_layer


def sample_tomogram() -> list[LayerData]:
    """The bundled sample tomogram (64×256×256 voxels at 1.68 nm, simulated, no network)."""
    from synapseg.io.volume import read_volume
    from synapseg.simulate import sample_path

    volume = read_volume(sample_path() / "tomogram.mrc")
    return [tomogram_layer(volume, name="synapseg sample")]
