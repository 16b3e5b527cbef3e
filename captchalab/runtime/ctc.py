"""CTC decoding in numpy (no torch): greedy, prefix beam search, and confidences.

All functions take per-frame log-probabilities ``(T, C)`` with class 0 the blank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from captchalab.runtime.decoded import Decoded

NEG_INF = -np.inf


def greedy_decode(log_probs: np.ndarray) -> tuple[int, ...]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = np.argmax(log_probs, axis=1)
    labels = []
    previous = 0
    for label in best.tolist():
        if label != previous and label != 0:
            labels.append(label)
        previous = label
    return tuple(labels)


def _logsumexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + float(np.log1p(np.exp(low - high)))


def prefix_beam_search(
    log_probs: np.ndarray,
    beam_width: int = 8,
    length: int | None = None,
    prune_log_prob: float = float(np.log(1e-4)),
) -> tuple[int, ...]:
    """CTC prefix beam search: the most probable *sequence*, summing over its alignments.

    With ``length`` set, prefixes longer than it are dropped and a prefix of exactly that length
    wins when any survives. Symbols below ``prune_log_prob`` in a frame are not expanded.
    """
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # (blank, non-blank)
    for frame in log_probs:
        candidates = [c for c in np.flatnonzero(frame >= prune_log_prob).tolist() if c != 0]
        best = int(np.argmax(frame))
        if best != 0 and best not in candidates:
            candidates.append(best)
        blank = float(frame[0])
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_label) in beams.items():
            total = _logsumexp(p_blank, p_label)
            here = following.setdefault(prefix, [NEG_INF, NEG_INF])
            here[0] = _logsumexp(here[0], total + blank)
            for c in candidates:
                p = float(frame[c])
                if prefix and prefix[-1] == c:
                    here[1] = _logsumexp(here[1], p_label + p)  # the same symbol continues
                    extend_from = p_blank  # a repeat needs a blank in between
                else:
                    extend_from = total
                if length is not None and len(prefix) >= length:
                    continue
                longer = following.setdefault(prefix + (c,), [NEG_INF, NEG_INF])
                longer[1] = _logsumexp(longer[1], extend_from + p)
        ranked = sorted(following.items(), key=lambda kv: -_logsumexp(*kv[1]))
        beams = {prefix: (s[0], s[1]) for prefix, s in ranked[:beam_width]}
    ranked_final = sorted(beams.items(), key=lambda kv: -_logsumexp(*kv[1]))
    if length is not None:
        exact = [prefix for prefix, _ in ranked_final if len(prefix) == length]
        if exact:
            return exact[0]
    return ranked_final[0][0]


def _extended(labels: Sequence[int]) -> np.ndarray:
    """``a b`` -> ``_ a _ b _``: the CTC state sequence of a labelling."""
    states = np.zeros(2 * len(labels) + 1, dtype=np.int64)
    states[1::2] = labels
    return states


def _ctc_trellis(log_probs: np.ndarray, labels: Sequence[int], viterbi: bool):
    """Forward variables over the extended labelling (logsumexp, or max with back-pointers)."""
    states = _extended(labels)
    n_states, n_frames = len(states), len(log_probs)
    skip = np.zeros(n_states, dtype=bool)  # may jump over a blank between different symbols
    skip[3::2] = states[3::2] != states[1:-2:2]
    alpha = np.full(n_states, NEG_INF)
    alpha[0] = log_probs[0, 0]
    if n_states > 1:
        alpha[1] = log_probs[0, states[1]]
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    for t in range(1, n_frames):
        options = np.full((3, n_states), NEG_INF)
        options[0] = alpha  # stay in the same state
        options[1, 1:] = alpha[:-1]  # move to the next state
        options[2, 2:] = np.where(skip[2:], alpha[:-2], NEG_INF)  # skip a blank
        if viterbi:
            back[t] = np.argmax(options, axis=0)
            merged = np.max(options, axis=0)
        else:
            with np.errstate(invalid="ignore"):
                merged = np.logaddexp.reduce(options, axis=0)
        alpha = merged + log_probs[t, states]
    return alpha, back, states


def sequence_log_prob(log_probs: np.ndarray, labels: Sequence[int]) -> float:
    """log P(labels | frames), summed over all CTC alignments (the CTC forward algorithm)."""
    if len(log_probs) < len(labels):
        return float(NEG_INF)
    alpha, _, _ = _ctc_trellis(log_probs, labels, viterbi=False)
    return float(np.logaddexp(alpha[-1], alpha[-2]) if len(alpha) > 1 else alpha[-1])


def align(log_probs: np.ndarray, labels: Sequence[int]) -> list[list[int]]:
    """The frames of each symbol in the most probable alignment (Viterbi), one list per symbol."""
    if not labels:
        return []
    alpha, back, states = _ctc_trellis(log_probs, labels, viterbi=True)
    state = len(states) - 1 if alpha[-1] >= alpha[-2] else len(states) - 2
    spans: list[list[int]] = [[] for _ in labels]
    for t in range(len(log_probs) - 1, -1, -1):
        if state % 2 == 1:
            spans[state // 2].append(t)
        state -= int(back[t, state])
    return [sorted(s) for s in spans]


def describe(log_probs: np.ndarray, labels: Sequence[int]) -> Decoded:
    """Attach confidences to a decoded sequence: P(sequence), per symbol its best frame's
    probability and its centre in frames."""
    labels = tuple(labels)
    spans = align(log_probs, labels)
    char_confidences, positions = [], []
    for label, span in zip(labels, spans):
        frame = span[int(np.argmax(log_probs[span, label]))] if span else 0
        char_confidences.append(float(np.exp(log_probs[frame, label])) if span else 0.0)
        positions.append(centre_of(log_probs[:, label], span))
    confidence = float(np.exp(sequence_log_prob(log_probs, labels)))
    return Decoded(labels, min(confidence, 1.0), tuple(char_confidences), tuple(positions))


def centre_of(symbol_log_probs: np.ndarray, span: Sequence[int]) -> float:
    """Probability-weighted mean frame of a symbol's aligned span (its centre, in frames)."""
    if not span:
        return 0.0
    weights = np.exp(symbol_log_probs[list(span)])
    return float(np.dot(weights, span) / max(float(weights.sum()), 1e-12))


def decode_batch(
    log_probs: np.ndarray,
    method: str = "beam",
    beam_width: int = 8,
    length: int | None = None,
) -> list[Decoded]:
    """Decode ``(N, T, C)`` log-probabilities with ``method`` 'greedy' or 'beam'."""
    if method not in ("greedy", "beam"):
        raise ValueError(f"unknown CTC decoding method {method!r}; use 'greedy' or 'beam'")
    results = []
    for item in log_probs.astype(np.float64):
        if method == "greedy":
            labels = greedy_decode(item)
        else:
            labels = prefix_beam_search(item, beam_width=beam_width, length=length)
        results.append(describe(item, labels))
    return results
