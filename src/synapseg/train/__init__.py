"""Training and fine-tuning on annotated tomograms (see docs/training.md).

Modules: ``targets`` (annotations -> targets), ``data`` (config, preparation, patch
sampling), ``augment``, ``losses``, ``trainer`` (loop), ``checkpoint``, ``validation``,
``export`` (model folder + card) and ``run`` (:func:`train_model`, what ``synapseg train``
calls).
"""

__all__ = ["train_model"]

_WHERE = {
    "train_model": "synapseg.train.run",
}


def __getattr__(name: str) -> object:  # lazy: importing the package stays cheap
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
