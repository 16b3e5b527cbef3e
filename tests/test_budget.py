"""Time budgets: the schedule's progress, a warning for a starved run, and resuming a run
that continues its schedule instead of starting it again (or says why it cannot)."""

from __future__ import annotations

import json

import pytest

from captchalab.cli import main
from captchalab.generators import generate
from captchalab.runtime.model_file import read_card
from captchalab.training import TrainConfig, train
from captchalab.training.config import (
    BUDGET_FULL_IMAGES,
    DEFAULT_BUDGET_MINUTES,
    default_budget_minutes,
)
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
    assert schedule["why"].startswith("the 0.03-minute budget ended the run at")
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
    peak = json.loads((out / "summary.json").read_text())["schedule"]["peak_learning_rate"]
    # (the peak the run chose: from the base model with this few images, a third of 3e-3)
    expected = [one_cycle((r["step"] - 1) / result.steps_planned, peak) for r in after]
    assert [r["lr"] for r in after] == pytest.approx(expected)


def test_until_converged_holds_the_peak_then_cools_down_when_validation_stalls():
    from captchalab.training.checkpoint import LoopState
    from captchalab.training.schedule import UntilConverged

    schedule = UntilConverged(peak=1e-3, warmup_steps=100, min_steps=500, max_steps=10_000,
                              epoch_steps=10)
    state = LoopState()
    assert schedule.rate(state) == pytest.approx(1e-3 / 25)  # the warm-up starts low
    state.step = 300
    assert schedule.rate(state) == 1e-3  # then holds the peak
    for accuracy in (0.5, 0.7, 0.8):  # improving: no cooldown
        state.step += 100
        schedule.update(state, accuracy, 1.0 - accuracy, 0.1, None)
    assert state.cooldown_start is None
    while state.cooldown_start is None:  # stalled: a loss 0.1% lower is not progress
        state.step += 100
        schedule.update(state, 0.8, 0.1999, 0.1, None)
    assert state.trigger == "converged" and state.stale >= 4
    start, length = state.cooldown_start, state.cooldown_steps
    assert length == max(round(0.2 * start), 20)
    state.step = start + length // 2
    assert schedule.rate(state) == pytest.approx((1e-3 + 1e-6) / 2, rel=1e-3)
    assert not schedule.finished(state)
    state.step = start + length
    assert schedule.finished(state) and schedule.rate(state) == pytest.approx(1e-6)


def test_until_converged_leaves_time_for_its_cooldown():
    from captchalab.training.checkpoint import LoopState
    from captchalab.training.schedule import UntilConverged

    schedule = UntilConverged(1e-3, 10, 500, 10_000, 10)
    state = LoopState(step=1000)
    schedule.update(state, 0.9, 0.1, seconds_per_step=0.1, time_left=25.0)  # 200 steps, 20 s
    assert state.cooldown_start is None
    schedule.update(state, 0.95, 0.05, seconds_per_step=0.1, time_left=15.0)
    assert state.trigger == "budget" and state.cooldown_steps == 200
    capped = LoopState(step=9000)
    schedule.update(capped, 0.9, 0.1, 0.1, None)
    assert capped.trigger == "schedule" and capped.cooldown_steps == 1000


def test_until_converged_cools_down_before_the_next_validation_would_be_too_late():
    """A tiny set validates every few epochs: the cooldown must start a validation early."""
    from captchalab.training.checkpoint import LoopState
    from captchalab.training.schedule import UntilConverged

    every_epoch = UntilConverged(1e-3, 10, 100, 1000, epoch_steps=10)
    every_sixth = UntilConverged(1e-3, 10, 100, 1000, epoch_steps=10, check_steps=60)
    early, late = LoopState(step=800), LoopState(step=800)
    every_epoch.update(early, 0.9, 0.1, 0.1, None)  # 800 + 10 + 160 < 1000: not yet
    every_sixth.update(late, 0.9, 0.1, 0.1, None)  # 800 + 60 + 160 >= 1000: now
    assert early.cooldown_start is None
    assert late.trigger == "schedule" and late.cooldown_steps == 160


@pytest.mark.slow
def test_an_easy_set_stops_when_converged_and_says_so(small_rings, tmp_path, capsys):
    out = tmp_path / "run"
    config = TrainConfig(epochs=8, schedule="until-converged", val_split=0.2)
    result = train(small_rings, out, config, log=print, show_progress=False)
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schedule"]["kind"] == "until-converged"
    if result.ended == "converged":
        assert "stopped: converged at epoch" in printed
        assert result.steps < summary["schedule"]["steps_at_most"]
    else:  # it never stalled: it ran until its longest allowed schedule
        assert result.ended == "schedule"
    rates = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rates[-1] < rates[len(rates) // 2] / 10  # it cooled down before it stopped


def test_a_run_on_few_images_chains_its_cycles_within_a_smaller_budget(small_rings, tmp_path):
    config = TrainConfig(epochs=1, cycles=2, from_scratch=True, width_multiplier=0.5)
    result = train(small_rings, tmp_path / "run", config, show_progress=False,
                   log=lambda _: None)
    schedule = json.loads((tmp_path / "run" / "summary.json").read_text())["schedule"]
    train_count = read_card(result.model_path).data.train_count
    assert train_count < BUDGET_FULL_IMAGES
    assert schedule["budget_minutes"] == round(default_budget_minutes(train_count), 2)
    assert schedule["budget_minutes"] < DEFAULT_BUDGET_MINUTES
