"""Which way round is the contrast? Ask the network on a central crop.

Most reconstructions show densities dark; some pipelines invert them. A network trained on
dark membranes sees almost nothing in an inverted tomogram, so the polarity must be settled
*before* the full prediction (the radial-profile check in ``synapseg.post.polarity`` only
confirms it afterwards). The network is run on one central crop both ways round; the
polarity with clearly more confident vesicle voxels wins.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from synapseg.io.volume import Volume

log = logging.getLogger(__name__)

CROP_NM = (120.0, 220.0, 220.0)  # a few vesicles' worth of context, (z, y, x)
CONFIDENT = 0.9
MIN_RATIO = 2.0  # below this the evidence is too weak to override the usual dark densities


def central_crop(volume: Volume, size_nm: tuple[float, float, float] = CROP_NM) -> Volume:
    """A (z, y, x) crop of about ``size_nm`` around the volume's center, read into memory."""
    slices = []
    for n, v, s in zip(volume.shape, volume.voxel_size_nm, size_nm):
        half = min(n, max(int(round(s / v)), 1)) // 2
        slices.append(slice(n // 2 - half, n // 2 - half + 2 * half or n))
    data = np.asarray(volume.data[tuple(slices)], dtype=np.float32)
    return Volume(data, volume.voxel_size_nm, volume.origin_nm, volume.path, "memory")


def network_polarity(volume: Volume, model: Any, device: str = "auto") -> dict[str, Any]:
    """Decide whether to invert the tomogram's contrast for the network.

    Parameters
    ----------
    volume
        The tomogram.
    model
        A loaded ``(net, card)`` pair (see ``synapseg.model.registry.load_model``).
    device
        Torch device for the two small predictions.

    Returns
    -------
    dict
        ``invert`` (bool), the confident-voxel fractions for ``normal`` and ``inverted``
        contrast, and ``ratio`` (the larger over the smaller).
    """
    from synapseg.infer.predict import predict_volume

    crop = central_crop(volume)
    fractions = {}
    for name, invert in (("normal", False), ("inverted", True)):
        prob = predict_volume(crop, model=model, device=device, invert=invert)
        fractions[name] = float((prob > CONFIDENT).mean())
    normal, inverted = fractions["normal"], fractions["inverted"]
    ratio = max(normal, inverted) / max(min(normal, inverted), 1e-6)
    invert = inverted > normal and ratio >= MIN_RATIO
    if invert:
        log.warning(
            "%s: contrast looks inverted (bright densities: the network finds %.0fx more "
            "vesicle voxels in the inverted volume); segmenting it inverted. Pass --invert no "
            "to override",
            volume.path,
            ratio,
        )
    elif ratio < MIN_RATIO:
        log.info(
            "%s: contrast polarity unclear (ratio %.2f); assuming dark densities",
            volume.path,
            ratio,
        )
    return {"invert": bool(invert), "confident_fraction": fractions, "ratio": ratio}
