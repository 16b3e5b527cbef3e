"""Decoders of every family on hand-made outputs, and the set metrics of multilabel."""

import numpy as np
import pytest

from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import SETS, STRINGS, get_decoder
from captchalab.runtime.heatmap import decode_heatmap, local_maxima
from captchalab.runtime.metrics import set_metrics


def _spot(maps, symbol, row, column, height):
    rows, columns = np.mgrid[: maps.shape[1], : maps.shape[2]]
    spot = height * np.exp(-((columns - column) ** 2) / (2 * 1.3**2)
                           - ((rows - row) ** 2) / (2 * 2.6**2))
    maps[symbol] = np.maximum(maps[symbol], spot)


def test_heatmap_reads_known_peaks_left_to_right():
    maps = np.zeros((5, 8, 40))  # blank slot + 4 symbols
    _spot(maps, 3, 4, 30, 0.9)
    _spot(maps, 1, 3, 5, 0.8)
    _spot(maps, 2, 5, 17, 0.7)
    decoded = decode_heatmap(maps, threshold=0.5)
    assert decoded.labels == (1, 2, 3)
    assert decoded.positions == (5.0, 17.0, 30.0)
    assert decoded.char_confidences == pytest.approx((0.8, 0.7, 0.9))
    assert decoded.confidence == pytest.approx(0.8 * 0.7 * 0.9)


def test_heatmap_threshold_drops_weak_peaks_and_near_duplicates_are_merged():
    maps = np.zeros((4, 8, 40))
    _spot(maps, 1, 4, 10, 0.9)
    _spot(maps, 2, 4, 11, 0.6)  # another symbol one column away: the same character
    _spot(maps, 3, 4, 30, 0.35)  # below the threshold
    assert decode_heatmap(maps, threshold=0.5).labels == (1,)
    assert decode_heatmap(maps, threshold=0.3).labels == (1, 3)


def test_heatmap_with_known_length_keeps_the_strongest_peaks():
    maps = np.zeros((4, 8, 40))
    for symbol, column, height in ((1, 5, 0.9), (2, 15, 0.4), (3, 25, 0.8), (1, 35, 0.7)):
        _spot(maps, symbol, 4, column, height)
    assert decode_heatmap(maps, threshold=0.3, length=3).labels == (1, 3, 1)
    assert decode_heatmap(maps, threshold=0.3).labels == (1, 2, 3, 1)


def test_local_maxima_ignore_the_slopes_of_a_spot():
    maps = np.zeros((1, 6, 12))
    _spot(maps, 0, 2, 6, 1.0)
    assert [(s, r, c) for _, s, r, c in local_maxima(maps, 0.1)] == [(0, 2, 6)]


def test_positions_decoder_takes_the_best_symbol_per_position():
    probs = np.full((1, 3, 4), 0.1)
    probs[0, 0, 2], probs[0, 1, 3], probs[0, 2, 1] = 0.7, 0.7, 0.7
    (decoded,) = get_decoder("positions")(np.log(probs), DecodingSettings())
    assert decoded.labels == (2, 3, 1)
    assert decoded.confidence == pytest.approx(0.7**3)


def test_presence_decoder_returns_the_set_above_the_threshold():
    logits = np.array([[0.0, 3.0, -3.0, 0.4]])  # class 0 is never read
    decoder = get_decoder("presence")
    assert not decoder.ordered
    assert decoder(logits, DecodingSettings(threshold=0.5))[0].labels == (1, 3)
    assert decoder(logits, DecodingSettings(threshold=0.7))[0].labels == (1,)


def test_unknown_decoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown decoder 'nope'"):
        get_decoder("nope")


def test_set_metrics_ignore_order_and_count():
    metrics = set_metrics(["abca", "bcd"], ["cab", "bc"], alphabet="abcd")
    assert metrics["exact_set_accuracy"] == 0.5
    assert metrics["per_label_accuracy"] == pytest.approx(1 - 1 / 8)
    assert SETS.is_right("abca", "cab") and not STRINGS.is_right("abca", "cab")


def test_each_reading_kind_ranks_describes_and_shows_its_own_metrics():
    strings = STRINGS.metrics(["ab", "Cd"], ["ab", "cd"], "abcdC")
    assert STRINGS.headline(strings) == 0.5 and strings["sequence_accuracy_case_folded"] == 1.0
    assert STRINGS.describe(strings).startswith("50.00% of captchas")
    sets = SETS.metrics(["ab", "cd"], ["ba", "c"], "abcd")
    assert SETS.headline(sets) == 0.5 and "exact character sets" in SETS.describe(sets)
    assert STRINGS.as_dict("ab", 0.9, (0.95, 0.95))["text"] == "ab"
    assert SETS.as_dict("ab", 0.9, (0.95, 0.92)) == {
        "characters": {"a": 0.95, "b": 0.92}, "confidence": 0.9, "order": "unknown"}
