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


def test_captcha_augmentation_strength_scales_its_warp_blur_and_occlusion():
    mild, strong = Augmentation.captcha(), Augmentation.captcha(2.0)
    assert (strong.elastic, strong.blur) == (2 * mild.elastic, 2 * mild.blur)
    assert strong.lines == 2 * mild.lines and Augmentation.captcha(5.0).lines == 0.5
    images = torch.zeros(16, 1, 32, 96)
    images[:, :, 10:20, 30:60] = 1.0
    off = Augmentation.captcha(0.0)(images, torch.Generator().manual_seed(0))
    on = Augmentation.captcha(2.0)(images, torch.Generator().manual_seed(0))
    assert not torch.equal(off, on)


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


def _stripes(count: int = 4) -> torch.Tensor:
    images = torch.ones(count, 1, 32, 96)
    images[:, :, 10:22, 20:30] = -1.0  # a dark glyph-like block on a light page
    return images


def test_captcha_augmentation_occludes_with_the_images_own_ink():
    images = _stripes(32)
    before = Augmentation(probability=0.0, noise=0.0)(images.clone(),
                                                      torch.Generator().manual_seed(0))
    out = Augmentation(probability=0.0, noise=0.0, lines=1.0)(
        images.clone(), torch.Generator().manual_seed(0))  # the same draws, then a line
    changed = out != before
    assert changed.any(dim=(1, 2, 3)).float().mean() > 0.6  # a light line on white hides
    for image, was, mask in zip(out, before, changed):  # in its own darkest or lightest
        assert set(image[mask].tolist()) <= {was.min().item(), was.max().item()}


def test_blur_and_elastic_warp_move_pixels_but_keep_the_page():
    images = _stripes()
    blurred = Augmentation(probability=1.0, rotation_degrees=0, shear=0, scale=(1, 1),
                           shift=(0, 0), contrast=(1, 1), brightness=0, noise=0,
                           blur=2.0)(images.clone(), torch.Generator().manual_seed(1))
    assert blurred.std() < images.std() and blurred.shape == images.shape
    warped = Augmentation(probability=0.0, noise=0.0, elastic=2.0)(
        images.clone(), torch.Generator().manual_seed(2))
    assert not torch.equal(warped, images)
    assert (warped - images).abs().mean() < 0.2  # a small, smooth displacement
    assert torch.isfinite(warped).all()


def test_the_default_augmentation_draws_as_it_always_did():
    """The captcha-shaped changes are off unless asked for: the same draws, the same images."""
    images = torch.randn(3, 1, 32, 64)
    plain = Augmentation()(images.clone(), torch.Generator().manual_seed(5))
    explicit = Augmentation(elastic=0, blur=0, lines=0, dots=0, erase=0)(
        images.clone(), torch.Generator().manual_seed(5))
    assert torch.equal(plain, explicit)


def test_the_weight_average_follows_the_weights_slowly():
    from captchalab.training.averaging import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)  # warm-up decay (1 + 1) / (10 + 1)
    assert average.model.weight[0, 0].item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        average.update(model)
    assert average.model.weight[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert not average.model.weight.requires_grad
    with pytest.raises(ValueError, match="decay must be between 0 and 1"):
        WeightAverage(model, decay=1.0)


def test_a_gpu_run_leaves_the_cpu_cores_to_the_drawing_processes():
    from captchalab.training.trainer import GPU_HOST_THREADS, host_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        with host_threads(torch.device("cuda")):  # a device name needs no GPU
            assert torch.get_num_threads() == min(4, GPU_HOST_THREADS)
        assert torch.get_num_threads() == 4
        with host_threads(torch.device("cpu")):  # a CPU run keeps its threads
            assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_paused_run_with_a_weight_average_resumes_exactly(tmp_path):
    """The average is part of the checkpoint: paused and resumed, the kept model is the
    one of a run that never stopped."""
    import numpy as np

    from captchalab.generators import generate
    from captchalab.runtime.model_file import load_model_file

    data = generate("rings", 100, tmp_path / "data", seed=5)
    config = dict(epochs=3, seed=2, ema=0.99, augment_captcha=True)
    straight = train(data, tmp_path / "straight", TrainConfig(**config), lambda _: None, False)
    train(data, tmp_path / "paused", TrainConfig(**config, stop_epoch=1), lambda _: None, False)
    resumed = train(data, tmp_path / "paused", TrainConfig(**config, resume=True),
                    lambda _: None, False)
    a, b = (load_model_file(r.model_path).tensors for r in (straight, resumed))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed.metrics == straight.metrics
