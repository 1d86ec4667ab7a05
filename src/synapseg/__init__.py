"""synapseg: segmentation of synaptic vesicles in cryo-electron tomograms."""

__version__ = "0.1.0"
