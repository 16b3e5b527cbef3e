"""The synthetic universe: every image its own random scheme, drawn reproducibly."""

from __future__ import annotations

import colorsys
import random
import string
from pathlib import Path

import numpy as np
import pytest

from captchalab.data import Preprocessing
from captchalab.generators import generate, load_scheme, render, schemes
from captchalab.generators.universe import (
    SYMBOLS,
    UNIVERSE,
    Universe,
    sample_scheme,
    universe_fonts,
)
from captchalab.runtime.arithmetic import answer, is_expression
from captchalab.training.synthetic import SyntheticStream


def test_universe_fonts_cover_every_symbol_and_leave_out_symbol_fonts():
    fonts = universe_fonts()
    names = {Path(f).name for f in fonts}
    assert "DejaVuSans.ttf" in names and len(fonts) >= 10
    assert not {"cmsy10.ttf", "cmex10.ttf", "STIXSizOneSymReg.ttf"} & names
    assert len(names) == len(fonts)  # one file per name


def test_the_universe_is_a_scheme_name_and_draws_the_same_image_for_the_same_index():
    assert "universe" not in schemes() and load_scheme("universe") is UNIVERSE  # not a preset
    first, again = render("universe", 3, 7), render("universe", 3, 7)
    assert first.label == again.label
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    other = render("universe", 4, 7)
    assert (other.label, other.image.size) != (first.label, first.image.size)


def test_the_universe_varies_size_colour_mode_length_and_text():
    drawn = [render("universe", 0, i) for i in range(160)]
    sizes = {item.image.size for item in drawn}
    modes = {item.image.mode for item in drawn}
    assert len(sizes) > 80 and modes == {"RGB", "L"}
    assert all(set(item.label) <= set(SYMBOLS) for item in drawn)
    questions = [item.label for item in drawn if is_expression(item.label)]
    words = [item.label for item in drawn if not is_expression(item.label)]
    assert {len(w) for w in words} == set(range(3, 9))
    assert questions and all(answer(q) >= 0 for q in questions)
    letters = "".join(words)
    assert set(letters) & set(string.ascii_uppercase) and set(letters) & set(string.digits)
    # some pages are dark with light text
    means = [np.asarray(item.image.convert("L")).mean() for item in drawn]
    assert min(means) < 100 < max(means)


def test_some_schemes_colour_each_character_vividly_and_some_rain_short_dashes():
    rng = random.Random(0)
    drawn = [sample_scheme(rng) for _ in range(300)]
    vivid = [s for s in drawn if s.glyphs.colors.choices]
    assert 40 < len(vivid) < 140  # about 3 in 10 of the dark-on-light schemes
    for scheme in vivid:
        assert scheme.glyphs.color_per == "character"
        saturations = [colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[1]
                       for rgb in scheme.glyphs.colors.choices]
        assert len(saturations) >= 4 and max(saturations) > 0.3
    assert sum(s.background.colors.low[0] >= 235 for s in vivid) > len(vivid) // 3  # white
    # a rain: many lines, each short beside the canvas height (0.1 of it at the shortest)
    rain = [s for s in drawn if s.noise.lines.count[1] >= 20
            and s.noise.lines.length == pytest.approx((0.1 * s.size[1], s.noise.lines.length[1]))
            and s.noise.lines.length[1] <= 0.4 * s.size[1]]
    assert len(rain) > 15


def test_a_narrowed_universe_draws_only_its_symbols():
    digits = Universe(alphabet="0123456789", length=(4, 4))
    for i in range(40):
        label = render(digits, 0, i).label
        assert len(label) == 4 and label.isdigit()


def test_generate_writes_universe_samples_with_a_labels_file(tmp_path):
    out = generate("universe", 12, tmp_path / "samples", seed=1)
    assert (out / "labels.csv").is_file()  # labels may hold "?" (arithmetic questions)
    assert len(list(out.glob("*.png"))) == 12


def test_an_epoch_drawn_by_several_workers_is_the_one_drawn_by_one():
    preprocessing = Preprocessing(height=32, width=128)
    one = SyntheticStream(UNIVERSE, preprocessing, 24, seed=5, background=False, workers=1)
    three = SyntheticStream(UNIVERSE, preprocessing, 24, seed=5, workers=3)
    try:
        three._submit(2)
        parallel = three.epoch(2, prefetch=False)
    finally:
        three.close()
    alone = one.epoch(2, prefetch=False)
    assert parallel.labels == alone.labels
    assert np.array_equal(parallel.pixels, alone.pixels)
