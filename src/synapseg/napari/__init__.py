"""The napari plugin (npe2 manifest ``napari.yaml``): open, segment, inspect and correct.

One module, one job; the logic lives in pure functions that run without a viewer, the Qt
widgets only wire them up:

``layers``
    napari layer-data tuples (image, points, labels, shapes) from volumes and tables, in
    physical units (layer ``scale`` = voxel size in nm).
``reader``
    the npe2 reader: tomograms (MRC/REC/TIFF/OME-Zarr, lazily) and synapseg outputs.
``fitting``
    sphere fits behind the correction tools (click-to-add, refit, merge, split, profile).
``corrections``
    the command stack over the vesicle table (add, delete, move, resize, merge, split,
    undo/redo) and the corrections' provenance.
``save``
    every export through the CLI's io code, and "add to training set".
``points``, ``correct_widget``, ``qc_panel``, ``segment_widget``, ``sample``
    the napari/Qt side (needs the ``napari`` extra).

Nothing here imports napari or Qt at package import time.
"""
