"""Evaluation of trained audio encoders: cross-modal retrieval metrics and their report.

Kept import-light (numpy; matplotlib only when a plot is written) so training can score
validation retrieval without extra dependencies.
"""

from wavbrivl.evaluate.report import write_retrieval_report
from wavbrivl.evaluate.retrieval import retrieval_metrics

__all__ = ["retrieval_metrics", "write_retrieval_report"]
