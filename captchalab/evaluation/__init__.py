"""Evaluation: a model's readings of a labelled folder, their metrics and reports."""

from captchalab.evaluation.evaluate import Evaluation, evaluate, write_report

__all__ = ["Evaluation", "evaluate", "write_report"]
