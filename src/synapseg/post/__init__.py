"""Post-processing: from a probability map to vesicles (instances, sphere fitting, filters,
label rendering)."""

__all__ = ["PostParams", "find_vesicles"]

_WHERE = {
    "PostParams": "synapseg.post.vesicles",
    "find_vesicles": "synapseg.post.vesicles",
}


def __getattr__(name: str) -> object:  # lazy: importing the package stays cheap
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
