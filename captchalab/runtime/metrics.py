"""Accuracy per captcha and per character, and the character error rate."""

from __future__ import annotations

from collections.abc import Sequence


def _edit_costs(a: str, b: str) -> list[list[int]]:
    """Levenshtein table: ``costs[i][j]`` edits turn ``a[:i]`` into ``b[:j]``."""
    costs = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(costs[i - 1][j] + 1, row[j - 1] + 1, costs[i - 1][j - 1] + (ca != cb)))
        costs.append(row)
    return costs


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning ``a`` into ``b``."""
    return _edit_costs(a, b)[-1][-1]


def align(truth: str, reading: str) -> list[tuple[str, str]]:
    """A least-edit alignment as (true, read) character pairs; ``""`` stands for a character
    missing from the reading (true side) or read in excess (read side)."""
    cost = _edit_costs(truth, reading)
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
    """``sequence_accuracy`` (whole captcha right), ``sequence_accuracy_case_folded`` (right
    but for upper/lower case), ``char_accuracy``, ``cer`` and ``count``.

    ``char_accuracy`` is 1 - edits / max(len(truth), len(prediction)) summed over images, so
    with equal lengths it is the share of positions read right; ``cer`` is edits per truth
    character.
    """
    if len(truths) != len(predictions):
        raise ValueError("truths and predictions differ in number")
    count = len(truths)
    if count == 0:
        return {"sequence_accuracy": 0.0, "sequence_accuracy_case_folded": 0.0,
                "char_accuracy": 0.0, "cer": 0.0, "count": 0}
    edits = [edit_distance(t, p) for t, p in zip(truths, predictions)]
    folded = sum(t.lower() == p.lower() for t, p in zip(truths, predictions))
    longest = sum(max(len(t), len(p)) for t, p in zip(truths, predictions)) or 1
    truth_chars = sum(len(t) for t in truths) or 1
    return {
        "sequence_accuracy": sum(e == 0 for e in edits) / count,
        "sequence_accuracy_case_folded": folded / count,
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
