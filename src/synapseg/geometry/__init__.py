"""Pure geometry on arrays: shapes described in nm, painted or measured on voxel grids.

This package sits below :mod:`synapseg.io` and :mod:`synapseg.post` (it imports neither), so
readers and writers can render a vesicle table without depending on post-processing.
"""

from synapseg.geometry.render import render_labels

__all__ = ["render_labels"]
