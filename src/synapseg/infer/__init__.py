"""Inference: rescaling and normalisation (:mod:`~synapseg.infer.preprocess`), block + halo
tiling with Gaussian blending (:mod:`~synapseg.infer.tiling`) and the tiled, batched forward
pass (:mod:`~synapseg.infer.predict`)."""

from synapseg._lazy import lazy_getattr

__all__ = ["predict_volume"]

_WHERE = {
    "predict_volume": "synapseg.infer.predict",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
