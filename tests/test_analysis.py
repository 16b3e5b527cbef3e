"""Analysis commands: seed 002's receptive-field measurement, seed 000's error views."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from captchalab.analysis.errors import MISSING, character_confusions
from captchalab.analysis.receptive_field import (
    measure_receptive_field,
    theoretical_receptive_field,
)
from captchalab.analysis.saliency import saliency
from captchalab.cli import main
from captchalab.models.backbone import Backbone
from captchalab.runtime.metrics import align, edit_distance


def _stack(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("network", "size", "stride"), [
    (_stack(nn.Conv2d(1, 4, 3, padding=1)), (3, 3), (1, 1)),
    # 3 -> 5 -> pool 2 (6, stride 2) -> 3x3 at stride 2 (10)
    (_stack(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
            nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1)), (10, 10), (2, 2)),
    (_stack(nn.Conv2d(1, 4, (5, 3), padding=(2, 1)), nn.MaxPool2d((2, 1)),
            nn.Conv2d(4, 4, 3, padding=2, dilation=2)), (14, 7), (2, 1)),
])
def test_measured_support_equals_the_computed_receptive_field(network, size, stride):
    assert theoretical_receptive_field(network) == (size, stride)
    field = measure_receptive_field(network)
    assert (field.y.support, field.x.support) == size
    assert field.spot.max() == pytest.approx(1.0)


def test_the_backbone_spot_is_close_to_gaussian_and_narrower_than_its_kernels():
    """Seed 002's observation, on the shared backbone."""
    field = measure_receptive_field(Backbone())
    assert field.x.theoretical == 42 and field.x.stride == 4
    assert field.x.gaussian_fit > 0.98 and field.y.gaussian_fit > 0.98
    assert 2.3548 * field.x.gaussian_sigma < field.kernel_sum < field.x.theoretical


def test_analyze_receptive_field_writes_png_and_json(trained_model, rings_test, tmp_path,
                                                    capsys):
    assert main(["analyze", "receptive-field", str(trained_model), "--data", str(rings_test),
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "receptive_field.json").read_text())
    assert report["family"] == "crnn" and report["x"]["theoretical"] == 42
    assert report["glyph_width"] > 0 and set(report["sees_whole_glyph"]) == {
        "theoretical", "effective"}
    assert (tmp_path / "receptive_field.png").read_bytes()[:4] == b"\x89PNG"
    assert "typical glyph" in capsys.readouterr().out
    assert main(["analyze", "receptive-field", str(tmp_path / "m.onnx")]) == 1
    assert "give the .safetensors model" in capsys.readouterr().err


@pytest.mark.parametrize(("truth", "reading", "pairs"), [
    ("abc", "abc", [("a", "a"), ("b", "b"), ("c", "c")]),
    ("abc", "axc", [("a", "a"), ("b", "x"), ("c", "c")]),
    ("abc", "ac", [("a", "a"), ("b", ""), ("c", "c")]),
    ("ac", "abc", [("a", "a"), ("", "b"), ("c", "c")]),
    ("", "ab", [("", "a"), ("", "b")]),
])
def test_alignment_pairs_each_character_with_what_was_read(truth, reading, pairs):
    assert align(truth, reading) == pairs
    assert sum(t != r for t, r in pairs) == edit_distance(truth, reading)


def test_confusions_count_mistakes_and_missing_characters():
    counts = character_confusions(["m74dm", "abc"], ["m774m", "ab"])
    assert counts[("c", MISSING)] == 1 and counts[("a", "a")] == 1
    assert sum(n for (t, r), n in counts.items() if t != r) == edit_distance("m74dm", "m774m") + 1


def test_analyze_errors_writes_galleries_confusions_and_json(trained_model, rings_test,
                                                             tmp_path, capsys):
    assert main(["analyze", "errors", str(trained_model), str(rings_test), "--out",
                 str(tmp_path)]) == 0
    report = json.loads((tmp_path / "errors.json").read_text())
    wrong = report["most_wrong"]
    assert all(r["truth"] != r["reading"] for r in wrong)
    assert [r["confidence"] for r in wrong] == sorted((r["confidence"] for r in wrong),
                                                      reverse=True)
    assert all(r["truth"] == r["reading"] for r in report["most_right"])
    assert len(report["most_right"]) == 16
    for name in ("most_wrong.png", "most_right.png", "confusion.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "read wrong" in capsys.readouterr().out


def test_analyze_errors_of_a_family_without_order_has_no_confusion_matrix(
        family_model, rings_test, tmp_path):
    assert main(["analyze", "errors", str(family_model("multilabel")), str(rings_test),
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "errors.json").read_text())
    assert "confusions" not in report and not (tmp_path / "confusion.png").exists()
    assert all(isinstance(r["reading"], str) for r in report["most_right"])
    assert (tmp_path / "most_wrong.png").exists() and (tmp_path / "most_right.png").exists()


@pytest.mark.parametrize("family", ["crnn", "heatmap"])
def test_saliency_lowers_the_ink_and_keeps_each_characters_output(
        family, trained_model, family_model, rings_test):
    model = trained_model if family == "crnn" else family_model("heatmap")
    image = sorted(rings_test.glob("*.png"))[0]
    result = saliency(model, image, steps=150)
    assert result.reading and len(result.characters) == len(result.reading)
    for character in result.characters:
        assert character.minimised.shape == result.original.shape
        assert character.minimised.min() >= 0.0 and character.minimised.max() <= 1.0
        assert character.ink_after < 0.5 * character.ink_before
        assert abs(character.output_after - character.output_before) < 0.5
    # each character keeps different pixels: its own place in the image
    centres = [np.average(np.arange(c.minimised.shape[1]), weights=c.minimised.sum(0) + 1e-9)
               for c in result.characters]
    assert centres == sorted(centres)


def test_analyze_saliency_writes_png_and_json(trained_model, rings_test, tmp_path, capsys):
    image = sorted(rings_test.glob("*.png"))[1]
    assert main(["analyze", "saliency", str(trained_model), str(image), "--steps", "50",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "saliency.json").read_text())
    assert report["c"] == 0.1 and len(report["characters"]) == len(report["reading"])
    assert all(c["ink_kept"] < 1.0 for c in report["characters"])
    assert (tmp_path / "saliency.png").read_bytes()[:4] == b"\x89PNG"
    assert "of the ink kept" in capsys.readouterr().out
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["analyze", "saliency", str(trained_model), str(tmp_path / "notes.png")]) == 1
    assert capsys.readouterr().err.strip().endswith("notes.png: not an image (PNG, JPEG, GIF, "
                                                    "BMP or WebP)")
