"""CTC decoding in numpy (no torch): greedy, prefix beam search, and confidences.

All functions take per-frame log-probabilities ``(T, C)`` with class 0 the blank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from captchalab.runtime.decoded import Decoded

NEG_INF = -np.inf


def greedy_decode(log_probs: np.ndarray) -> tuple[int, ...]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    path = np.argmax(log_probs, axis=1).tolist()
    return tuple(path[span[0]] for span in _path_spans(path))


def _logsumexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def prefix_beam_search(
    log_probs: np.ndarray,
    beam_width: int = 8,
    bounds: tuple[int, int] | None = None,
    prune_log_prob: float = float(np.log(1e-4)),
    top_symbols: int = 16,
) -> tuple[int, ...]:
    """CTC prefix beam search: the most probable *sequence*, summing over its alignments.

    With ``bounds`` (min, max) set, prefixes longer than max are dropped, so are prefixes
    too short to reach min in the frames left, and a prefix within the bounds wins when any
    survives. Only a frame's ``top_symbols`` most probable symbols, and of those only the ones
    above ``prune_log_prob``, are expanded (a large alphabet costs no more than a small one),
    and beams below the best by more than twice that are dropped.
    """
    low, high = bounds if bounds is not None else (0, len(log_probs))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # (blank, non-blank)
    expand = log_probs >= prune_log_prob
    if log_probs.shape[1] > top_symbols:  # keep each frame's most probable symbols only
        unlikely = np.argpartition(-log_probs, top_symbols, axis=1)[:, top_symbols:]
        np.put_along_axis(expand, unlikely, False, axis=1)
    expand[np.arange(len(log_probs)), np.argmax(log_probs, axis=1)] = True  # always the best
    expand[:, 0] = False  # the blank extends nothing
    frames = np.asarray(log_probs, dtype=np.float64).tolist()
    rows, columns = np.nonzero(expand)
    per_frame: list[list[int]] = [[] for _ in frames]
    for row, column in zip(rows.tolist(), columns.tolist()):
        per_frame[row].append(column)
    for t, (frame, candidates) in enumerate(zip(frames, per_frame)):
        blank = frame[0]
        frames_left = len(frames) - t
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_label) in beams.items():
            total = _logsumexp(p_blank, p_label)
            here = following.setdefault(prefix, [NEG_INF, NEG_INF])
            here[0] = _logsumexp(here[0], total + blank)
            for c in candidates:
                p = frame[c]
                if prefix and prefix[-1] == c:
                    here[1] = _logsumexp(here[1], p_label + p)  # the same symbol continues
                    extend_from = p_blank  # a repeat needs a blank in between
                else:
                    extend_from = total
                if len(prefix) >= high:
                    continue
                longer = following.setdefault(prefix + (c,), [NEG_INF, NEG_INF])
                longer[1] = _logsumexp(longer[1], extend_from + p)
        scored = sorted(((_logsumexp(*s), prefix, s) for prefix, s in following.items()
                         if len(prefix) + frames_left - 1 >= low),  # can still reach min
                        key=lambda item: -item[0])
        if not scored:
            break
        floor = scored[0][0] + 2 * prune_log_prob  # beams this far behind cannot catch up
        beams = {prefix: (s[0], s[1]) for total, prefix, s in scored[:beam_width]
                 if total >= floor}
    ranked_final = sorted(beams.items(), key=lambda kv: -_logsumexp(*kv[1]))
    if bounds is not None:
        within = [prefix for prefix, _ in ranked_final if low <= len(prefix) <= high]
        if within:
            return within[0]
    return ranked_final[0][0] if ranked_final else ()


def _extended(labelings: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each labelling as CTC states ``_ a _ b _``, padded to one ``(N, S)`` array, with where a
    state may be reached by skipping a blank (between two different symbols), and lengths.
    An item's padding states come after its own and never feed into them."""
    lengths = np.array([len(labels) for labels in labelings], dtype=np.int64)
    n_states = 2 * int(lengths.max(initial=0)) + 1
    states = np.zeros((len(labelings), n_states), dtype=np.int64)
    for i, labels in enumerate(labelings):
        states[i, 1 : 2 * len(labels) : 2] = labels
    skip = np.zeros(states.shape, dtype=bool)
    skip[:, 3::2] = states[:, 3::2] != states[:, 1:-2:2]
    return states, skip, lengths


def _emissions(log_probs: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``(N, T, S)``: each frame's log-probability of each item's states."""
    return np.take_along_axis(log_probs, states[:, None, :].repeat(log_probs.shape[1], 1), 2)


def _forward(log_probs: np.ndarray, labelings: Sequence[Sequence[int]],
             rescale_every: int = 4) -> np.ndarray:
    """log P(labels | frames) per item, summed over every alignment: the CTC forward
    recursion for the whole batch at once, as one small matrix product per frame, in
    probabilities rescaled every few frames (float64 keeps that far from underflow)."""
    n_items, n_frames, _ = log_probs.shape
    states, skip, lengths = _extended(labelings)
    n_states = states.shape[1]
    emissions = np.exp(_emissions(log_probs, states))
    moves = np.zeros((n_items, n_states, n_states))  # moves[i, from, to]
    index = np.arange(n_states)
    moves[:, index, index] = 1.0
    moves[:, index[:-1], index[1:]] = 1.0
    moves[:, index[:-2], index[2:]] = skip[:, 2:]
    alpha = np.zeros((n_items, 1, n_states))
    alpha[:, 0, : min(2, n_states)] = emissions[:, 0, : min(2, n_states)]
    log_scale = np.zeros(n_items)
    with np.errstate(divide="ignore"):
        for t in range(1, n_frames + 1):
            if t % rescale_every == 0 or t == n_frames:
                scale = alpha.sum(axis=2)
                alpha /= np.maximum(scale, 1e-300)[:, :, None]
                log_scale += np.log(scale[:, 0])
            if t < n_frames:
                alpha = np.matmul(alpha, moves) * emissions[:, t, None, :]
        last = 2 * lengths
        rows = np.arange(n_items)
        final = alpha[rows, 0, last] + np.where(lengths > 0,
                                                alpha[rows, 0, np.maximum(last - 1, 0)], 0.0)
        total = np.log(final) + log_scale
    total[lengths > n_frames] = NEG_INF
    return total


def _viterbi_spans(log_probs: np.ndarray, labelings: Sequence[Sequence[int]]
                   ) -> list[list[list[int]]]:
    """Per item, the frames of each symbol in its most probable alignment."""
    n_items, n_frames, _ = log_probs.shape
    states, skip, lengths = _extended(labelings)
    emissions = _emissions(log_probs, states)
    best = np.full(states.shape, NEG_INF)
    best[:, 0] = emissions[:, 0, 0]
    if states.shape[1] > 1:
        best[:, 1] = emissions[:, 0, 1]
    back = np.zeros((n_frames, *states.shape), dtype=np.int8)
    for t in range(1, n_frames):
        options = np.full((3, *states.shape), NEG_INF)  # stay, next state, skip a blank
        options[0] = best
        options[1, :, 1:] = best[:, :-1]
        options[2, :, 2:] = np.where(skip[:, 2:], best[:, :-2], NEG_INF)
        back[t] = np.argmax(options, axis=0)
        best = np.max(options, axis=0) + emissions[:, t]
    back_list = back.transpose(1, 0, 2).tolist()
    result = []
    for i, labels in enumerate(labelings):
        spans: list[list[int]] = [[] for _ in labels]
        last = 2 * len(labels)
        if labels and len(labels) <= n_frames:
            state = last if best[i, last] >= best[i, last - 1] else last - 1
            for t in range(n_frames - 1, -1, -1):
                if state % 2 == 1:
                    spans[state // 2].append(t)
                state -= back_list[i][t][state]
            for span in spans:
                span.reverse()
        result.append(spans)
    return result


def _path_spans(path: Sequence[int]) -> list[list[int]]:
    """The frames of each symbol along a best path (argmax per frame): the path is the most
    probable alignment of the labelling it collapses to, so no Viterbi pass is needed."""
    spans: list[list[int]] = []
    previous = 0
    for t, label in enumerate(path):
        if label != 0:
            if label == previous:
                spans[-1].append(t)
            else:
                spans.append([t])
        previous = label
    return spans


def sequence_log_prob(log_probs: np.ndarray, labels: Sequence[int]) -> float:
    """log P(labels | frames), summed over all CTC alignments (the CTC forward algorithm)."""
    return float(_forward(np.asarray(log_probs, dtype=np.float64)[None], [tuple(labels)])[0])


def align(log_probs: np.ndarray, labels: Sequence[int]) -> list[list[int]]:
    """The frames of each symbol in the most probable alignment (Viterbi), one list per symbol."""
    return _viterbi_spans(np.asarray(log_probs)[None], [tuple(labels)])[0]


def describe_batch(log_probs: np.ndarray, labelings: Sequence[Sequence[int]],
                   spans: list[list[list[int]]] | None = None) -> list[Decoded]:
    """Attach confidences to decoded sequences: P(sequence), per symbol its best frame's
    probability and its centre in frames. ``spans`` (each symbol's frames in the best
    alignment) are found by Viterbi when not given."""
    sequence = _forward(log_probs, labelings)
    if spans is None:
        spans = _viterbi_spans(log_probs, labelings)
    results = []
    for item, labels, item_spans, log_p in zip(log_probs, labelings, spans, sequence):
        char_confidences, positions = [], []
        for label, span in zip(labels, item_spans):
            scores = item[span, label]
            char_confidences.append(float(np.exp(scores.max())) if span else 0.0)
            positions.append(centre_of(item[:, label], span))
        results.append(Decoded(tuple(labels), min(float(np.exp(log_p)), 1.0),
                               tuple(char_confidences), tuple(positions)))
    return results


def describe(log_probs: np.ndarray, labels: Sequence[int]) -> Decoded:
    """:func:`describe_batch` for one item."""
    return describe_batch(np.asarray(log_probs, dtype=np.float64)[None], [tuple(labels)])[0]


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
    bounds: tuple[int, int] | None = None,
) -> list[Decoded]:
    """Decode ``(N, T, C)`` log-probabilities with ``method`` 'greedy' or 'beam'; ``bounds``
    (min, max) makes the beam search read a string of such a length when it can."""
    if method not in ("greedy", "beam"):
        raise ValueError(f"unknown CTC decoding method {method!r}; use 'greedy' or 'beam'")
    items = log_probs.astype(np.float64)
    paths = np.argmax(items, axis=2).tolist()
    spans = [_path_spans(path) for path in paths]
    labelings = [tuple(path[span[0]] for span in item) for path, item in zip(paths, spans)]
    decoded = describe_batch(items, labelings, spans)
    if method == "greedy":
        return decoded
    # A reading with probability above 1/2 is the most probable one (all readings sum to 1),
    # the answer beam search looks for: the search runs only where the best path is unsure.
    unsure = [i for i, d in enumerate(decoded)
              if d.confidence <= 0.5 or (bounds is not None and not
                                         bounds[0] <= len(d.labels) <= bounds[1])]
    if unsure:
        searched = [prefix_beam_search(items[i], beam_width=beam_width, bounds=bounds)
                    for i in unsure]
        for i, d in zip(unsure, describe_batch(items[unsure], searched)):
            decoded[i] = d
    return decoded
