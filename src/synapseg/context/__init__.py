"""Synapse context: membrane classes, the active-zone membrane, the presynaptic
compartment, each vesicle's distance to the active zone, its pool, and distance layers.

Pure numpy/scipy functions on the input grid in physical units; the ``context`` stage
(:mod:`synapseg.context.stage`) runs them inside ``synapseg segment``. See docs/context.md.
"""

from synapseg._lazy import lazy_getattr

__all__ = [
    "AZ_COLUMNS",
    "MEMBRANE_CLASSES",
    "ActiveZone",
    "MembraneMap",
    "SynapseContext",
    "add_az_columns",
    "analyse_context",
    "assign_pools",
    "az_distances",
    "classify_membranes",
    "distance_layers",
    "find_active_zone",
    "membrane_classes",
    "midplane",
    "presynaptic_compartment",
]

_WHERE = {
    "AZ_COLUMNS": "synapseg.context.distances",
    "MEMBRANE_CLASSES": "synapseg.context.classify",
    "ActiveZone": "synapseg.context.az",
    "MembraneMap": "synapseg.context.classify",
    "SynapseContext": "synapseg.context.analyse",
    "add_az_columns": "synapseg.context.distances",
    "analyse_context": "synapseg.context.analyse",
    "assign_pools": "synapseg.context.distances",
    "az_distances": "synapseg.context.distances",
    "classify_membranes": "synapseg.context.classify",
    "distance_layers": "synapseg.context.distances",
    "find_active_zone": "synapseg.context.az",
    "membrane_classes": "synapseg.context.analyse",
    "midplane": "synapseg.context.az",
    "presynaptic_compartment": "synapseg.context.compartment",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
