"""Property-based tests: CTC decoding against brute force, preprocessing of any image size,
and labels that survive the trip through a file name."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from captchalab.data import Preprocessing, label_from_filename
from captchalab.data.preprocess import ImageError
from captchalab.runtime import ctc
from captchalab.service.labelling import check_label


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, previous = [], 0
    for label in path:
        if label != 0 and label != previous:
            out.append(label)
        previous = label
    return tuple(out)


def _brute_force(probs: np.ndarray) -> tuple[dict, dict]:
    """P(labelling) summed over every path, and the best single path per labelling."""
    total, best = defaultdict(float), defaultdict(float)
    frames, classes = probs.shape
    for path in itertools.product(range(classes), repeat=frames):
        p = float(np.prod(probs[np.arange(frames), path]))
        labels = _collapse(path)
        total[labels] += p
        best[labels] = max(best[labels], p)
    return total, best


frames_strategy = st.integers(1, 5).flatmap(
    lambda t: st.integers(2, 3).flatmap(
        lambda c: arrays(np.float64, (t, c), elements=st.floats(0.01, 1.0))))


@settings(max_examples=60, deadline=None)
@given(frames_strategy, st.integers(0, 2**32 - 1))
def test_ctc_probabilities_and_alignments_match_brute_force(weights, seed):
    probs = weights / weights.sum(axis=1, keepdims=True)
    log_probs = np.log(probs)
    total, best = _brute_force(probs)
    labellings = sorted(total, key=lambda labels: (len(labels), labels))
    assert np.isclose(sum(total.values()), 1.0)
    batched = ctc.describe_batch(log_probs[None].repeat(len(labellings), 0), labellings)
    for labels, described in zip(labellings, batched):
        assert np.isclose(described.confidence, total[labels], rtol=1e-9, atol=1e-12)
        spans = ctc.align(log_probs, labels)
        path = [0] * len(probs)
        for label, span in zip(labels, spans):
            for t in span:
                path[t] = label
        assert _collapse(tuple(path)) == labels
        assert np.isclose(np.prod(probs[np.arange(len(probs)), path]), best[labels])
    winner = max(total, key=total.get)
    decoded = ctc.decode_batch(log_probs[None], "beam", beam_width=8)[0]
    if total[winner] > 0.5:
        assert decoded.labels == winner
    assert np.isclose(decoded.confidence, total[decoded.labels])
    greedy = ctc.decode_batch(log_probs[None], "greedy")[0]
    assert greedy.labels == _collapse(tuple(np.argmax(probs, axis=1)))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 120), st.sampled_from(["L", "RGB", "RGBA", "P"]),
       st.integers(0, 255))
def test_preprocessing_gives_the_model_size_for_any_image(width, height, mode, value):
    from PIL import Image

    colour = value if mode in ("L", "P") else (value,) * len(mode)
    image = Image.new(mode, (width, height), colour)
    pre = Preprocessing(height=32, width=96)
    pixels = pre.load(image)
    assert pixels.shape == (32, 96) and pixels.dtype == np.uint8
    batch = pre.normalize(pixels[None])
    assert batch.shape == (1, 1, 32, 96) and np.isfinite(batch).all()


label_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                     min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(label_text)
def test_a_saved_label_reads_back_from_its_file_name(label):
    try:
        checked = check_label(label)
    except ValueError:
        return  # refused with a reason; nothing is written
    for copy in ("", "_1", "_17"):
        assert label_from_filename(f"{checked}{copy}.png") == checked


def _encoded(fmt: str, mode: str) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (24, 60, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


SEED_IMAGES = {(fmt, mode): _encoded(fmt, mode) for fmt, mode in [
    ("PNG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("JPEG", "RGB"), ("JPEG", "CMYK"),
    ("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB"), ("TIFF", "RGB")]}

mutation = st.tuples(st.sampled_from(["flip", "cut", "insert", "field"]),
                     st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8))


def _mutate(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, payload in edits:
        at = int(where * len(out))
        if kind == "flip" and out:
            out[at] ^= payload[0] or 1
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "field":  # a size or length field set to an odd value
            out[at:at + 4] = payload[:1] * 4
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SEED_IMAGES)), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_image_files_load_or_give_image_error(seed, edits):
    """The loading path every reader uses gives a model-sized array or an ImageError (a
    one-line reason), never another exception, for any damage to a valid file."""
    pre = Preprocessing(height=32, width=96)
    try:
        pixels = pre.load(_mutate(SEED_IMAGES[seed], edits))
    except ImageError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert pixels.shape == (32, 96) and pixels.dtype == np.uint8
