"""Analysis commands: seed 002's receptive-field measurement."""

from __future__ import annotations

import json

import pytest
from torch import nn

from captchalab.analysis import measure_receptive_field, theoretical_receptive_field
from captchalab.cli import main
from captchalab.models.backbone import Backbone


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
