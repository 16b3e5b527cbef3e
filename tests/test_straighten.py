"""Seed 002's normalisation (level midline, text height) and --invert, stored in the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from captchalab import Recognizer
from captchalab.cli import main
from captchalab.data import Preprocessing
from captchalab.data.straighten import TEXT_FILL, ink_weights, midline, otsu_threshold, straighten


def text_line(angle: float = 0.0, glyph_height: int = 20, size=(240, 80)) -> Image.Image:
    """Six dark blocks (glyphs) along a line through the image centre, turned by ``angle``
    degrees counter-clockwise."""
    image = Image.new("L", size, 235)
    draw = ImageDraw.Draw(image)
    top = size[1] // 2 - glyph_height // 2
    for i in range(6):
        left = 30 + i * 30
        draw.rectangle([left, top, left + 14, top + glyph_height], fill=30)
    return image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=235)


def text_height_share(image: Image.Image) -> float:
    ink, _ = ink_weights(np.asarray(image))
    profile = ink.sum(axis=1)
    rows = np.arange(len(profile))
    centre = (profile * rows).sum() / profile.sum()
    sigma = math.sqrt((profile * (rows - centre) ** 2).sum() / profile.sum())
    return 4 * sigma / image.height


def test_otsu_splits_ink_from_page():
    pixels = np.array([20] * 50 + [230] * 200, dtype=np.uint8)
    assert 20 < otsu_threshold(pixels) < 230


@pytest.mark.parametrize("angle", [-12.0, -5.0, 0.0, 7.0, 15.0])
def test_the_midline_fit_finds_the_rotation_and_straightening_levels_it(angle):
    turned = text_line(angle)
    slope, _ = midline(ink_weights(np.asarray(turned))[0])
    # rows grow downwards: a counter-clockwise turn makes the line rise to the right
    assert math.degrees(math.atan(-slope)) == pytest.approx(angle, abs=1.0)
    level, _ = midline(ink_weights(np.asarray(straighten(turned)))[0])
    assert abs(math.degrees(math.atan(level))) < 1.0


@pytest.mark.parametrize("glyph_height", [10, 20, 34])
def test_text_height_is_normalised_whatever_its_size(glyph_height):
    band = straighten(text_line(0.0, glyph_height))
    assert band.width == 240
    assert text_height_share(band) == pytest.approx(TEXT_FILL, abs=0.08)


def test_an_image_without_ink_is_left_as_it_is():
    blank = Image.new("L", (100, 40), 200)
    assert straighten(blank) is blank


def test_invert_reads_light_on_dark_as_dark_on_light():
    image = text_line(5.0)
    plain = Preprocessing(height=32, width=96)
    inverted = Preprocessing(height=32, width=96, invert=True)
    np.testing.assert_array_equal(inverted.load(ImageOps.invert(image)), plain.load(image))
    straightened = Preprocessing(height=32, width=96, invert=True, deskew=True)
    assert Preprocessing.from_dict(straightened.to_dict()) == straightened
    assert straightened.load(ImageOps.invert(image)).shape == (32, 96)


@pytest.mark.slow
def test_deskew_is_stored_in_the_model_and_applied_when_predicting(rings_train, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(rings_train), "--out", str(out), "--epochs", "1", "--deskew",
                 "--invert", "--quiet"]) == 0
    recognizer = Recognizer.load(out / "model.safetensors")
    assert recognizer.preprocessing.deskew and recognizer.preprocessing.invert
    image = sorted(rings_train.glob("*.png"))[0]
    expected = recognizer.preprocessing.load(image)
    assert not np.array_equal(expected, Preprocessing.from_dict(
        {**recognizer.preprocessing.to_dict(), "deskew": False}).load(image))
    assert main(["export", str(out / "model.safetensors"), "--out", str(tmp_path / "m.onnx"),
                 "--quiet"]) == 0
    exported = Recognizer.load(tmp_path / "m.onnx")
    assert exported.preprocessing == recognizer.preprocessing
    assert exported.predict(image).text == recognizer.predict(image).text


def test_deskew_is_refused_where_it_cannot_apply(rings_train, trained_model, tmp_path, capsys):
    assert main(["train", str(rings_train), "--out", str(tmp_path / "a"), "--deskew",
                 "--init", str(trained_model)]) == 1
    assert "keep the preprocessing of the model" in capsys.readouterr().err
    assert main(["train", str(rings_train), "--out", str(tmp_path / "b"), "--deskew",
                 "--model", "heatmap"]) == 1
    assert "trains on centres" in capsys.readouterr().err
