"""One module per CLI command; each registers itself on ``synapseg.cli.app``."""
