"""What the specimen is and how it was imaged, measured from the tomogram itself.

``mask``: the specimen region (vacuum/ice slabs, lamella edges, gold fiducials excluded).
``wedge``: the missing wedge (tilt axis, tilt range, single or dual axis) from the spectrum.
"""

from synapseg.specimen.mask import SpecimenMask, specimen_mask
from synapseg.specimen.wedge import WedgeEstimate, estimate_wedge, resolve_wedge

__all__ = ["SpecimenMask", "WedgeEstimate", "estimate_wedge", "resolve_wedge", "specimen_mask"]
