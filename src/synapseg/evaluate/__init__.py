"""Evaluation against ground truth: matching, metrics, label-derived tables, reports.

See docs/evaluation.md for the matching rule and the metric definitions.
"""

from synapseg.evaluate.from_labels import table_from_labels
from synapseg.evaluate.matching import MatchResult, match_vesicles, resolve_table
from synapseg.evaluate.metrics import compute_metrics

__all__ = [
    "MatchResult",
    "compute_metrics",
    "match_vesicles",
    "resolve_table",
    "table_from_labels",
]
