"""The network (:mod:`~synapseg.model.unet`) and named, checksummed models
(:mod:`~synapseg.model.registry`)."""

from synapseg._lazy import lazy_getattr

__all__ = ["ModelCard", "load_model", "resolve_model"]

_WHERE = {
    "ModelCard": "synapseg.model.registry",
    "load_model": "synapseg.model.registry",
    "resolve_model": "synapseg.model.registry",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
