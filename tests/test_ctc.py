import numpy as np
import pytest

from captchalab.runtime import ctc


def _log(probs) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))


def test_greedy_merges_repeats_and_drops_blanks():
    # frames: a a _ a b b _   (classes: 0 blank, 1 a, 2 b)
    best = [1, 1, 0, 1, 2, 2, 0]
    probs = np.full((7, 3), 0.05)
    probs[np.arange(7), best] = 0.9
    assert ctc.greedy_decode(_log(probs)) == (1, 1, 2)


def test_beam_search_beats_greedy_when_alignments_add_up():
    # Each frame: blank 0.6, a 0.4. Greedy reads "" (p = 0.36) but
    # P("a") = 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64.
    log_probs = _log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc.greedy_decode(log_probs) == ()
    assert ctc.prefix_beam_search(log_probs, beam_width=4) == (1,)
    assert np.isclose(np.exp(ctc.sequence_log_prob(log_probs, (1,))), 0.64)
    assert np.isclose(np.exp(ctc.sequence_log_prob(log_probs, ())), 0.36)


def test_sequence_probabilities_sum_to_one_over_all_labellings():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=3)  # 3 frames, blank + 2 symbols
    log_probs = _log(probs)
    labellings = [()] + [(a,) for a in (1, 2)] + [(a, b) for a in (1, 2) for b in (1, 2)]
    labellings += [(a, b, c) for a in (1, 2) for b in (1, 2) for c in (1, 2) if a != b and b != c]
    total = sum(np.exp(ctc.sequence_log_prob(log_probs, seq)) for seq in labellings)
    assert np.isclose(total, 1.0)


def test_fixed_length_beam_prefers_a_labelling_of_that_length():
    # Unconstrained best is "a" (one symbol) but with length=2 the decoder must return two.
    probs = [[0.1, 0.8, 0.1], [0.5, 0.45, 0.05], [0.2, 0.7, 0.1]]
    log_probs = _log(probs)
    assert len(ctc.prefix_beam_search(log_probs, beam_width=8)) == 1
    assert ctc.prefix_beam_search(log_probs, beam_width=8, bounds=(2, 2)) == (1, 1)


def test_alignment_and_confidences_point_at_the_right_frames():
    best = [0, 1, 1, 0, 0, 2, 0]
    probs = np.full((7, 3), 0.05)
    probs[np.arange(7), best] = 0.9
    probs[2, 1] = 0.8
    probs[2, 0] = 0.15
    decoded = ctc.describe(_log(probs), (1, 2))
    # centres: the span's frames weighted by the symbol's probability there
    assert decoded.positions == pytest.approx(((0.9 * 1 + 0.8 * 2) / 1.7, 5.0))
    assert decoded.char_confidences == pytest.approx((0.9, 0.9))
    assert 0.5 < decoded.confidence <= 1.0
    assert ctc.align(_log(probs), (1, 2)) == [[1, 2], [5]]


def test_decode_batch_methods_and_bad_method():
    log_probs = _log([[[0.6, 0.4], [0.6, 0.4]]])
    assert ctc.decode_batch(log_probs, "greedy")[0].labels == ()
    assert ctc.decode_batch(log_probs, "beam")[0].labels == (1,)
    with pytest.raises(ValueError, match="unknown CTC decoding"):
        ctc.decode_batch(log_probs, "viterbi")


def test_batched_trellis_matches_items_of_any_length():
    rng = np.random.default_rng(3)
    log_probs = np.log(rng.dirichlet(np.ones(5), size=(4, 9)))
    labelings = [(), (1,), (2, 2, 3), (4, 1, 4, 1)]
    together = ctc.describe_batch(log_probs, labelings)
    for item, labels, decoded in zip(log_probs, labelings, together):
        alone = ctc.describe(item, labels)
        assert decoded.labels == labels
        assert np.isclose(decoded.confidence, alone.confidence)
        assert np.isclose(decoded.confidence, np.exp(ctc.sequence_log_prob(item, labels)))
        assert decoded.positions == alone.positions


def test_beam_decoding_agrees_with_the_full_search():
    rng = np.random.default_rng(5)
    peaked = rng.dirichlet(np.full(6, 0.3), size=(64, 12))  # some sure, some unsure frames
    log_probs = np.log(np.clip(peaked, 1e-9, None))
    decoded = ctc.decode_batch(log_probs, "beam", beam_width=8)
    searched = [ctc.prefix_beam_search(item, beam_width=8) for item in log_probs]
    agree = sum(d.labels == s for d, s in zip(decoded, searched))
    assert agree >= 63  # the shortcut returns the exact best reading where it is sure
    for d, s, item in zip(decoded, searched, log_probs):
        assert ctc.sequence_log_prob(item, d.labels) >= ctc.sequence_log_prob(item, s) - 1e-9


def test_a_large_alphabet_expands_only_each_frames_most_probable_symbols():
    """500 symbols: keeping each frame's 16 best changes no reading of a trained-like output,
    and a frame's best symbol is always among those kept."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        logits = rng.normal(0, 1, (24, 501))
        logits[np.arange(24), rng.integers(0, 501, 24)] += 8  # one clear symbol per frame
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        assert ctc.prefix_beam_search(log_probs) == ctc.prefix_beam_search(
            log_probs, top_symbols=501)
    flat = np.full((1, 40), np.log(1 / 40))  # every symbol above the floor, all alike
    flat[0, 39] += 1e-3  # the last symbol is the best: it is kept
    assert ctc.prefix_beam_search(flat - np.logaddexp.reduce(flat, axis=1), top_symbols=4) \
        == (39,)
