"""Time budgets: the schedule's progress, a warning for a starved run, and resuming a run
that continues its schedule instead of starting it again (or says why it cannot)."""

from __future__ import annotations

import json

import pytest

from captchalab.cli import main
from captchalab.generators import generate
from captchalab.training import TrainConfig, train
from captchalab.training.schedule import Progress, one_cycle


@pytest.fixture(scope="module")
def small_rings(tmp_path_factory):
    return generate("rings", 120, tmp_path_factory.mktemp("rings_budget"), seed=23)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_steps_or_time_whichever_is_further(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("captchalab.training.schedule.time.monotonic", clock)
    progress = Progress(total_steps=1000, budget=60.0)
    assert progress.share(100) == pytest.approx(0.1)  # no time spent yet: steps decide
    clock.now += 30
    assert progress.share(100) == pytest.approx(0.5)  # half the budget: time decides
    assert Progress(1000).share(250) == 0.25  # without a budget, steps alone


def test_a_resumed_run_continues_its_share_and_its_learning_rate(monkeypatch):
    """A run stopped at 40% of its schedule by time, after 100 of 1000 steps and 48 of its
    120 seconds: resumed, it starts at 40% (the same learning rate), not at 10%."""
    clock = Clock()
    monkeypatch.setattr("captchalab.training.schedule.time.monotonic", clock)
    resumed = Progress(1000, budget=120.0, start_step=100, start_share=0.4, spent=48.0)
    assert resumed.share(100) == pytest.approx(0.4)
    assert one_cycle(resumed.share(100), 3e-3) == pytest.approx(one_cycle(0.4, 3e-3))
    clock.now += 36  # half of the 72 seconds left
    assert resumed.share(101) == pytest.approx(0.4 + 0.6 * 0.5)
    assert resumed.share(1000) == pytest.approx(1.0)  # the remaining steps end it too
    assert resumed.budget_left == pytest.approx(72.0)
    paced_by_steps = Progress(1000, None, start_step=100, start_share=0.1, spent=48.0)
    assert paced_by_steps.share(550) == 0.55  # exactly as if never paused


@pytest.mark.slow
def test_a_starved_run_warns_and_says_so_in_its_summary(small_rings, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(small_rings), "--out", str(out), "--max-minutes", "0.03",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    schedule = summary["schedule"]
    assert schedule["ended"] == "budget" and schedule["share"] < 0.5
    assert schedule["steps_run"] < schedule["steps_planned"]
    assert len(summary["warnings"]) >= 1 and "undertrained" in summary["warnings"][0]
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")][0]
    assert "--max-minutes" in warning and "--epochs" in warning and "`" not in warning
    assert f"{schedule['steps_run']} of {schedule['steps_planned']} planned steps" in warning
    assert "stopped by its time budget" in captured.out


def test_resuming_a_finished_run_says_there_is_nothing_to_resume(small_rings, tmp_path,
                                                                 capsys):
    out = tmp_path / "run"
    assert main(["train", str(small_rings), "--out", str(out), "--epochs", "2",
                 "--quiet"]) == 0
    model = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(small_rings), "--out", str(out), "--epochs", "2", "--resume",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "ran its whole schedule" in err
    assert (out / "model.safetensors").read_bytes() == model  # nothing was retrained


def test_resuming_with_its_budget_spent_is_an_error_naming_the_budget(small_rings, tmp_path,
                                                                     capsys):
    out = tmp_path / "run"
    paused = TrainConfig(epochs=40, stop_epoch=2, max_minutes=5.0)
    train(small_rings, out, paused, log=lambda _: None, show_progress=False)
    assert main(["train", str(small_rings), "--out", str(out), "--epochs", "40", "--resume",
                 "--max-minutes", "0.0001", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--max-minutes budget" in err and "is spent" in err and "larger --max-minutes" in err


@pytest.mark.slow
def test_a_resumed_run_goes_on_from_its_schedule(small_rings, tmp_path):
    """Paused after 2 of 6 epochs, then resumed: the learning rate goes on from the pause
    (no second warm-up), and the run ends after the remaining epochs."""
    out = tmp_path / "run"
    train(small_rings, out, TrainConfig(epochs=6, stop_epoch=2), lambda _: None, False)
    before = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result = train(small_rings, out, TrainConfig(epochs=6, resume=True), lambda _: None, False)
    after = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert after[: len(before)] == before and result.ended == "schedule"
    steps = [r["step"] for r in after]
    assert steps == sorted(steps) and after[-1]["epoch"] == 6
    # each record has the rate of its epoch's last step, set before that step was counted
    expected = [one_cycle((r["step"] - 1) / result.steps_planned, 3e-3) for r in after]
    assert [r["lr"] for r in after] == pytest.approx(expected)
