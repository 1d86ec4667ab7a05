"""Deprecated location of :func:`synapseg.geometry.render.render_labels` (re-exported).

Rendering a vesicle table into labels is pure geometry, used by :mod:`synapseg.io`; it lives
in :mod:`synapseg.geometry.render` so that io depends on nothing above it. Import it from
there; this alias stays for existing code.
"""

from synapseg.geometry.render import MAX_LABEL, render_labels

__all__ = ["MAX_LABEL", "render_labels"]
