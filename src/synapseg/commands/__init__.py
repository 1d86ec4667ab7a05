"""One module per CLI command; each registers itself on ``synapseg.commands.base.app``
(:mod:`synapseg.cli` imports them all)."""
