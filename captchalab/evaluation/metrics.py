"""Accuracy per captcha and per character, and the character error rate."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def align(truth: str, reading: str) -> list[tuple[str, str]]:
    """A least-edit alignment as (true, read) character pairs; ``""`` stands for a character
    missing from the reading (true side) or read in excess (read side)."""
    rows, columns = len(truth) + 1, len(reading) + 1
    cost = [[0] * columns for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(columns):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, columns):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1,
                             cost[i - 1][j - 1] + (truth[i - 1] != reading[j - 1]))
    pairs, i, j = [], len(truth), len(reading)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (truth[i - 1] != reading[j - 1]):
            pairs.append((truth[i - 1], reading[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((truth[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", reading[j - 1]))
            j -= 1
    return pairs[::-1]


def text_metrics(truths: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """``sequence_accuracy`` (whole captcha right), ``char_accuracy``, ``cer`` and ``count``.

    ``char_accuracy`` is 1 - edits / max(len(truth), len(prediction)) summed over images, so
    with equal lengths it is the share of positions read right; ``cer`` is edits per truth
    character.
    """
    if len(truths) != len(predictions):
        raise ValueError("truths and predictions differ in number")
    count = len(truths)
    if count == 0:
        return {"sequence_accuracy": 0.0, "char_accuracy": 0.0, "cer": 0.0, "count": 0}
    edits = [edit_distance(t, p) for t, p in zip(truths, predictions)]
    longest = sum(max(len(t), len(p)) for t, p in zip(truths, predictions)) or 1
    truth_chars = sum(len(t) for t in truths) or 1
    return {
        "sequence_accuracy": sum(e == 0 for e in edits) / count,
        "char_accuracy": 1.0 - sum(edits) / longest,
        "cer": sum(edits) / truth_chars,
        "count": count,
    }


def set_metrics(truths: Sequence[str], predictions: Sequence[str], alphabet: Sequence[str]
                ) -> dict[str, float]:
    """For readers of *which* symbols are present (not their order or count), as in seed 000.

    ``exact_set_accuracy``: the predicted set equals the label's set of symbols;
    ``per_label_accuracy``: share of (image, alphabet symbol) presence decisions that are right.
    """
    if len(truths) != len(predictions):
        raise ValueError("truths and predictions differ in number")
    count = len(truths)
    if count == 0:
        return {"exact_set_accuracy": 0.0, "per_label_accuracy": 0.0, "count": 0}
    wrong = [len(set(t) ^ set(p)) for t, p in zip(truths, predictions)]
    return {
        "exact_set_accuracy": sum(w == 0 for w in wrong) / count,
        "per_label_accuracy": 1.0 - sum(wrong) / (count * max(len(alphabet), 1)),
        "count": count,
    }


def reading_metrics(truths: Sequence[str], predictions: Sequence[str], ordered: bool,
                    alphabet: Sequence[str]) -> dict[str, float]:
    """Text metrics for families that read strings, set metrics for those that cannot."""
    if ordered:
        return text_metrics(truths, predictions)
    return set_metrics(truths, predictions, alphabet)


def headline(metrics: dict) -> float:
    """The one number models are ranked by: whole-captcha (or exact-set) accuracy."""
    return metrics.get("sequence_accuracy", metrics.get("exact_set_accuracy", 0.0))


def is_right(truth: str, reading: str, ordered: bool) -> bool:
    return truth == reading if ordered else set(truth) == set(reading)
