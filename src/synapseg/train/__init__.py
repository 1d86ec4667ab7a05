"""Training and fine-tuning on annotated tomograms (see docs/training.md).

Modules: ``targets`` (annotations -> targets), ``data`` (config, preparation, patch
sampling), ``augment``, ``losses``, ``trainer`` (loop), ``checkpoint``, ``validation``,
``export`` (model folder + card) and ``run`` (:func:`train_model`, what ``synapseg train``
calls).
"""
