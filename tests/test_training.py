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


@pytest.mark.slow
def test_time_budget_stops_training_early(rings_train, tmp_path):
    result = train(rings_train, tmp_path, TrainConfig(epochs=200, max_minutes=0.1),
                   log=lambda _: None, show_progress=False)
    assert result.epochs < 200
    assert result.model_path.is_file()
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["lr"] < 3e-3 / 100  # the schedule annealed within the budget


def test_default_schedule_follows_the_family_and_epochs_override_it(tmp_path):
    from captchalab.training.config import TARGET_STEPS
    from captchalab.training.trainer import planned_steps

    def plan(model: str, epochs: int | None = None) -> tuple[int, int]:
        return planned_steps(TrainConfig(model=model, epochs=epochs, batch_size=32), 842)

    epochs, steps = plan("crnn")
    assert (epochs, steps) == (111, 111 * 27)  # 842 images: 27 steps an epoch
    assert abs(steps - TARGET_STEPS) <= 27
    assert plan("multihead") == (222, 222 * 27)  # the slower learners ask for twice the steps
    assert plan("multihead-spatial") == plan("multihead")
    assert plan("multihead", epochs=5) == plan("crnn", epochs=5) == (5, 135)


def test_augmentation_keeps_shape_and_changes_images():
    images = torch.zeros(8, 1, 32, 96)
    images[:, :, 10:20, 30:60] = 1.0
    generator = torch.Generator().manual_seed(0)
    augmented = Augmentation()(images, generator)
    assert augmented.shape == images.shape
    assert not torch.allclose(augmented, images)
    again = Augmentation()(images, torch.Generator().manual_seed(0))
    assert torch.equal(augmented, again)  # reproducible with the same generator


def test_augmentation_moves_points_with_their_pixels():
    images = torch.zeros(2, 1, 32, 128)
    images[0, 0, 12, 40] = images[1, 0, 20, 90] = 1.0
    points = torch.tensor([[[40.5, 12.5]], [[90.5, 20.5]]])  # the pixels' centres
    strong = Augmentation(rotation_degrees=20, shear=0.3, probability=1.0, noise=0.0,
                          brightness=0.0, contrast=(1.0, 1.0))
    moved = strong(images, torch.Generator().manual_seed(3), points)
    for i in range(2):
        row, column = divmod(int(torch.argmax(moved[i, 0])), 128)
        assert abs(points[i, 0, 0] - (column + 0.5)) <= 1.0
        assert abs(points[i, 0, 1] - (row + 0.5)) <= 1.0
    assert not torch.equal(points, torch.tensor([[[40.5, 12.5]], [[90.5, 20.5]]]))


def test_generator_centres_are_read_and_scaled_to_the_model_input(rings_train):
    from captchalab.data import read_labelled_folder, split_samples
    from captchalab.reporting.progress import ProgressReporter
    from captchalab.training.data import FolderData

    folder = read_labelled_folder(rings_train)
    config = TrainConfig(model="heatmap")
    train_samples, val_samples = split_samples(folder.samples, 0.1)
    data = FolderData.load(folder, train_samples, val_samples, config, ProgressReporter(False),
                           needs_centres=True)
    first = json.loads((rings_train / "annotations.jsonl").read_text().splitlines()[0])
    index = [s.path.name for s in data.train].index(first["file"])
    scale = torch.tensor([data.preprocessing.width / 310, data.preprocessing.height / 80])
    expected = torch.tensor(first["centres"]) * scale
    centres = data.training(0).centres
    assert torch.allclose(centres[index], expected, atol=1e-3)
    assert centres.shape == (len(data.train), 6, 2)
