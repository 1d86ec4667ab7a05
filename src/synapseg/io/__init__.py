"""File input/output: tomograms, tables and annotation formats."""
