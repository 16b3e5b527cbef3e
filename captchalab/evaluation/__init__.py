"""Evaluation: metrics and reports on labelled folders."""

from captchalab.evaluation.evaluate import Evaluation, evaluate, write_report
from captchalab.evaluation.metrics import edit_distance, text_metrics

__all__ = ["Evaluation", "edit_distance", "evaluate", "text_metrics", "write_report"]
