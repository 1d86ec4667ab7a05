"""Post-processing: from a probability map to vesicles (instances, sphere fitting, filters,
label rendering)."""
