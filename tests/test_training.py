import json

import pytest
import torch

from captchalab.training import TrainConfig, train
from captchalab.training.augment import Augmentation
from captchalab.training.schedule import one_cycle


def test_one_cycle_rises_to_the_peak_then_anneals():
    peak = 3e-3
    assert one_cycle(0.0, peak) == pytest.approx(peak / 25)
    assert one_cycle(0.15, peak) == pytest.approx(peak)
    assert one_cycle(1.0, peak) == pytest.approx(peak / 1e3)
    rates = [one_cycle(p / 100, peak) for p in range(101)]
    top = rates.index(max(rates))
    assert all(a <= b for a, b in zip(rates[:top], rates[1 : top + 1]))
    assert all(a >= b for a, b in zip(rates[top:], rates[top + 1 :]))


def test_time_budget_stops_training_early(rings_train, tmp_path):
    result = train(rings_train, tmp_path, TrainConfig(epochs=200, max_minutes=0.1),
                   log=lambda _: None, show_progress=False)
    assert result.epochs < 200
    assert result.model_path.is_file()
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["lr"] < 3e-3 / 100  # the schedule annealed within the budget


def test_augmentation_keeps_shape_and_changes_images():
    images = torch.zeros(8, 1, 32, 96)
    images[:, :, 10:20, 30:60] = 1.0
    generator = torch.Generator().manual_seed(0)
    augmented = Augmentation()(images, generator)
    assert augmented.shape == images.shape
    assert not torch.allclose(augmented, images)
    again = Augmentation()(images, torch.Generator().manual_seed(0))
    assert torch.equal(augmented, again)  # reproducible with the same generator
