"""Inference: rescaling and normalisation (:mod:`~synapseg.infer.preprocess`), block + halo
tiling with Gaussian blending (:mod:`~synapseg.infer.tiling`) and the tiled, batched forward
pass (:mod:`~synapseg.infer.predict`)."""

__all__ = ["predict_volume"]

_WHERE = {
    "predict_volume": "synapseg.infer.predict",
}


def __getattr__(name: str) -> object:  # lazy: importing the package stays cheap
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
