"""Post-processing: from a probability map to vesicles (instances, sphere fitting, filters,
label rendering)."""

from synapseg._lazy import lazy_getattr

__all__ = ["PostParams", "find_vesicles"]

_WHERE = {
    "PostParams": "synapseg.post.vesicles",
    "find_vesicles": "synapseg.post.vesicles",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
