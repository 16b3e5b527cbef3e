"""Experiments: series of trainings on one labelled folder, compared side by side.

``compare`` trains several families on the same split and budget; ``audit`` trains on
growing subsets to tell how many labels break a captcha scheme. The defaults below are
importable without torch (the CLI shows them).
"""

AUDIT_SIZES = "25,50,100,200,400,all"
AUDIT_MINUTES = 25.0  # the whole audit's training budget
AUDIT_VAL_SPLIT = 0.2
AUDIT_SEEDS = 3  # runs per size below 200 labels
