"""Inference: rescaling and normalisation (:mod:`~synapseg.infer.preprocess`), block + halo
tiling with Gaussian blending (:mod:`~synapseg.infer.tiling`) and the tiled, batched forward
pass (:mod:`~synapseg.infer.predict`)."""
