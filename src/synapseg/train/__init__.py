"""Training and fine-tuning on annotated tomograms (see docs/training.md).

Modules: ``targets`` (annotations -> targets), ``data`` (config, preparation, patch
sampling), ``augment``, ``losses``, ``trainer`` (loop), ``checkpoint``, ``validation``,
``export`` (model folder + card) and ``run`` (:func:`train_model`, what ``synapseg train``
calls).
"""

from synapseg._lazy import lazy_getattr

__all__ = ["train_model"]

_WHERE = {
    "train_model": "synapseg.train.run",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
