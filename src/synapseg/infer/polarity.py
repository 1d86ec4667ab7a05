"""Which way round is the contrast? The one polarity decision of a segmentation run.

Most reconstructions show densities dark; some pipelines invert them. A network trained on
dark membranes sees almost nothing in an inverted tomogram, so the polarity must be settled
*before* the full prediction, and it is settled once: :func:`decide_polarity` runs the
network both ways round on a few crops inside the specimen and compares how many voxels it
is confident about (the strongest evidence: it is what the segmentation will see; each crop is
prepared once, as the full prediction prepares the volume, and judged both ways round in one
batch of two). Its
result is recorded in the report and passed on; the radial-profile statistic of
:mod:`synapseg.post.polarity` only serves library calls that have no network.

Stable on tomograms without vesicles: contrast is flipped only when the inverted volume
holds at least :data:`MIN_INVERT_EVIDENCE` confident voxels (several vesicles' worth per
crop) *and* :data:`MIN_RATIO` times more than the normal one. Otherwise the usual dark
densities are kept (they need only :data:`MIN_EVIDENCE`), with confidence 0 when there is
no evidence either way, so two crops of the same vesicle-free data set get the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from synapseg.io.volume import Volume
from synapseg.specimen.mask import SpecimenMask

log = logging.getLogger(__name__)

CROP_NM = (120.0, 220.0, 220.0)  # a few vesicles' worth of context, (z, y, x)
CONFIDENT = 0.9
MIN_RATIO = 2.0  # below this the evidence is too weak to override the usual dark densities
MIN_EVIDENCE = 0.01
"""Confident-voxel fraction of a crop needed to count as evidence (a vesicle of 20 nm radius
fills about 0.6 % of a default crop; vesicle-free simulated crops reach at most 0.4 %)."""
MIN_INVERT_EVIDENCE = 0.04
"""Confident-voxel fraction of the inverted crops needed to flip the contrast. Higher than
:data:`MIN_EVIDENCE` because protein densities turned bright can look like lumens: on 56
vesicle-free draws of world v2 (``default_rng([20261295, 1000 + j])``) ``sim-unet-v2`` found
up to 2.9 % confident voxels in the inverted crops and, with the old 1 % rule, flipped 13 of
them (``sim-unet-v1`` 2, at up to 1.6 %); each flip fills an empty tomogram with false
vesicles (3-13 in the four flipped of the first 16). Draws with vesicles reach 4-22 % on
their true side for both networks, apart from draws where the network finds almost nothing
either way."""
MAX_CROPS = 5


def central_crop(
    volume: Volume,
    size_nm: tuple[float, float, float] = CROP_NM,
    center_px: Sequence[float] | None = None,
) -> Volume:
    """A (z, y, x) crop of about ``size_nm`` around ``center_px`` (default: the volume's
    center), shifted to lie inside the volume and read into memory."""
    data = np.asarray(volume.data[_crop_slices(volume, size_nm, center_px)], dtype=np.float32)
    return Volume(data, volume.voxel_size_nm, volume.origin_nm, volume.path, "memory")


def _crop_slices(
    volume: Volume, size_nm: Sequence[float], center_px: Sequence[float] | None
) -> tuple[slice, ...]:
    center = [n // 2 for n in volume.shape] if center_px is None else center_px
    slices = []
    for n, v, s, c in zip(volume.shape, volume.voxel_size_nm, size_nm, center):
        half = min(n, max(int(round(s / v)), 1)) // 2
        start = int(np.clip(int(c) - half, 0, max(n - 2 * half, 0)))
        slices.append(slice(start, start + 2 * half or n))
    return tuple(slices)


def crop_centers(volume: Volume, specimen: SpecimenMask | None = None) -> list[tuple[int, ...]]:
    """Centers (input voxels) of the crops that judge the polarity, best first: the middle
    of the specimen's z-range at the y-x center, then the four quadrant centers; crops whose
    center is outside the specimen are skipped."""
    nz, ny, nx = volume.shape
    zc = nz // 2
    if specimen is not None:
        z0, z1 = specimen.facts.get("specimen_z_range_px", (0, nz))
        zc = (int(z0) + int(z1)) // 2
    candidates = [(zc, ny // 2, nx // 2)] + [
        (zc, int(fy * ny), int(fx * nx)) for fy in (0.25, 0.75) for fx in (0.25, 0.75)
    ]
    if specimen is None:
        return candidates[:MAX_CROPS]
    kept = [c for c in candidates if specimen.contains_px(np.asarray(c, dtype=float))]
    return (kept or candidates[:1])[:MAX_CROPS]


def decide_polarity(
    volume: Volume,
    model: Any,
    device: str = "auto",
    specimen: SpecimenMask | None = None,
    max_crops: int = MAX_CROPS,
) -> dict[str, Any]:
    """Decide once whether to invert the tomogram's contrast for the network.

    Parameters
    ----------
    volume
        The tomogram.
    model
        A loaded ``(net, card)`` pair (see ``synapseg.model.registry.load_model``).
    device
        Torch device for the small predictions.
    specimen
        Specimen mask: crops are centred inside the specimen, and each crop is normalised
        over its own specimen voxels.
    max_crops
        Crops are judged in turn until they hold enough evidence for the side that leads
        (at most this many).

    Returns
    -------
    dict
        ``invert`` (bool), ``confidence`` (0: no evidence, or a lean to inverted below
        :data:`MIN_INVERT_EVIDENCE`, and the usual dark densities are assumed; else the share
        of confident voxels on the winning side, 0.5-1),
        ``evidence`` (``none``, ``weak`` or ``clear``), ``confident_fraction`` for
        ``normal`` and ``inverted`` contrast (summed over the crops used), ``ratio`` (the
        larger over the smaller), ``crops`` (their centers) and a one-line ``statement``.
    """
    from synapseg.infer.forward import prepare_net, select_device
    from synapseg.model.registry import load_model

    net, card = model if isinstance(model, tuple) else load_model(model)
    dev = select_device(device)
    crop_nm = network_crop_nm(volume, card, net)
    net = prepare_net(net, dev)  # once for every crop and both polarities
    totals = {"normal": 0.0, "inverted": 0.0}
    used: list[list[int]] = []
    seen = set()
    for center in crop_centers(volume, specimen)[: max(1, max_crops)]:
        key = tuple((sl.start, sl.stop) for sl in _crop_slices(volume, crop_nm, center))
        if key in seen:  # a small volume: the crops coincide
            continue
        seen.add(key)
        crop = central_crop(volume, crop_nm, center)
        normal, inverted = confident_fractions(crop, net, card, dev)
        totals["normal"] += normal
        totals["inverted"] += inverted
        used.append([int(c) for c in center])
        if _enough(totals, len(used)):
            break
    normal, inverted = totals["normal"], totals["inverted"]
    ratio = max(normal, inverted) / max(min(normal, inverted), 1e-6)
    enough = max(normal, inverted) >= MIN_EVIDENCE * len(used)
    leads_inverted = inverted > normal and ratio >= MIN_RATIO
    invert = bool(leads_inverted and _enough(totals, len(used)))
    # no evidence, or a lean to inverted below what flipping needs: dark densities assumed
    assumed = not enough or (leads_inverted and not invert)
    evidence = "none" if not enough else ("clear" if ratio >= MIN_RATIO and not assumed else "weak")
    confidence = 0.0 if assumed else max(normal, inverted) / (normal + inverted)
    if invert:
        statement = (
            f"contrast looks inverted (bright densities: the network finds {ratio:.0f}x more "
            "vesicle voxels in the inverted volume); segmenting it inverted. Pass --invert no "
            "to override"
        )
        log.warning("%s: %s", volume.path, statement)
    elif not enough:
        statement = (
            "no vesicle evidence either way in the polarity crops; assuming the usual dark "
            "densities (pass --invert yes if densities are bright)"
        )
        log.info("%s: %s", volume.path, statement)
    elif evidence == "weak":
        statement = (
            f"contrast polarity unclear (ratio {ratio:.2f}, {max(normal, inverted) / len(used):.1%}"
            " confident voxels); assuming dark densities (pass --invert yes if densities are "
            "bright)"
        )
        log.info("%s: %s", volume.path, statement)
    else:
        statement = f"dark densities (the network finds {ratio:.0f}x more vesicle voxels)"
    return {
        "invert": invert,
        "confidence": round(float(confidence), 3),
        "evidence": evidence,
        "confident_fraction": {k: v / len(used) for k, v in totals.items()},
        "ratio": ratio,
        "crops": used,
        "statement": statement,
    }


def _enough(totals: dict[str, float], n_crops: int) -> bool:
    """Whether the leading side's confident voxels (summed over ``n_crops`` crops) settle the
    question: :data:`MIN_INVERT_EVIDENCE` per crop to flip, :data:`MIN_EVIDENCE` to keep."""
    if totals["inverted"] > totals["normal"]:
        return totals["inverted"] >= MIN_INVERT_EVIDENCE * n_crops
    return totals["normal"] >= MIN_EVIDENCE * n_crops


def confident_fractions(crop: Volume, net: Any, card: Any, device: Any) -> tuple[float, float]:
    """Fractions of a crop's voxels with probability > :data:`CONFIDENT`, for the normal and
    the inverted contrast, from one batch of two.

    The crop is prepared once as the full prediction prepares a volume
    (:func:`synapseg.infer.preprocess.prepare_image`: model grid, statistics inside the crop's
    own specimen mask, 0 outside it), as one tile padded with zeros; the inverted input is
    its negative. The probabilities are mapped back to the crop's own grid as the full
    prediction maps them (linear, with the anti-alias filter when that grid is coarser), so
    the fractions equal those of ``predict_volume`` on the crop, on which the thresholds
    were calibrated (counted on the model grid they are 1.1-1.6x higher for small blobs).
    ``net`` is an inference-ready network (:func:`synapseg.infer.forward.prepare_net`) on
    ``device``.
    """
    from synapseg.infer.forward import forward_batch
    from synapseg.infer.preprocess import (
        antialias_sigma,
        normalise_config,
        normalise_statistics,
        prepare_image,
        resample_block,
        rescale_factors,
    )

    image, _ = prepare_image(
        crop.data,
        crop.voxel_size_nm,
        card.voxel_size_nm,
        normalise_config(card.normalisation),
        specimen=normalise_statistics(card.normalisation) == "specimen",
    )
    # one tile padded with zeros to the network's size multiple, as in the full prediction
    m = _size_multiple(net)
    target = [max(-(-n // m) * m, m) for n in image.shape]
    batch = np.zeros((2, 1, *target), np.float32)
    region = tuple(slice(0, n) for n in image.shape)
    batch[(0, 0, *region)] = image
    np.negative(image, out=batch[(1, 0, *region)])
    prob = forward_batch(net, batch, device)[(slice(None), 0, *region)]
    # back to the crop's grid: input voxel i sits at model coordinate i * f
    f = rescale_factors(crop.voxel_size_nm, card.voxel_size_nm)
    coords = [np.arange(n) * f[k] for k, n in enumerate(crop.shape)]
    back = resample_block(prob, coords, antialias_sigma(1 / f))
    confident = (back > CONFIDENT).mean(axis=(1, 2, 3))
    return float(confident[0]), float(confident[1])


def _size_multiple(net: Any) -> int:
    return int(net.config.size_multiple) if hasattr(net, "config") else 16


def network_crop_nm(volume: Volume, card: Any, net: Any) -> tuple[float, ...]:
    """About :data:`CROP_NM`, adjusted so that the crop's model grid is at most the nearest
    multiple of the network's size multiple (no tile padded by most of a multiple: 120 nm in
    z at 1.469 nm would give 67 model voxels, padded to 80; this gives 63, padded to 64)."""
    m = _size_multiple(net)
    sizes = []
    for v, s in zip(volume.voxel_size_nm, CROP_NM):
        f = float(v) / float(card.voxel_size_nm)
        target = max(int(round(s / float(card.voxel_size_nm) / m)) * m, m)
        n_in = int(np.floor((target - 1) / f + 1e-9)) + 1  # input voxels with <= target
        n_in -= n_in % 2  # central_crop takes an even number of voxels
        sizes.append(max(n_in, 2) * float(v))
    return tuple(sizes)


def network_polarity(volume: Volume, model: Any, device: str = "auto") -> dict[str, Any]:
    """:func:`decide_polarity` without a specimen mask (kept for existing callers)."""
    return decide_polarity(volume, model, device)
