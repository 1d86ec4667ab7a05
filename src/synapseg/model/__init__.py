"""The network (:mod:`~synapseg.model.unet`) and named, checksummed models
(:mod:`~synapseg.model.registry`)."""

__all__ = ["ModelCard", "load_model", "resolve_model"]

_WHERE = {
    "ModelCard": "synapseg.model.registry",
    "load_model": "synapseg.model.registry",
    "resolve_model": "synapseg.model.registry",
}


def __getattr__(name: str) -> object:  # lazy: importing the package stays cheap
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
