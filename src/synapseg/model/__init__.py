"""The network (:mod:`~synapseg.model.unet`) and named, checksummed models
(:mod:`~synapseg.model.registry`)."""
