"""Chained one-cycle schedules: the default run restarts its schedule while validation
improves and the budget allows, says why it stopped, and resumes inside any cycle."""

from __future__ import annotations

import json

import pytest

from captchalab import Recognizer
from captchalab.generators import generate
from captchalab.training import TrainConfig, train
from captchalab.training.checkpoint import LoopState
from captchalab.training.config import (
    BUDGET_FULL_IMAGES,
    DEFAULT_BUDGET_MINUTES,
    MAX_CYCLES,
    MIN_BUDGET_MINUTES,
    ConfigError,
)
from captchalab.training.trainer import chain_verdict


@pytest.fixture(scope="module")
def rings(tmp_path_factory):
    # 540 training images: a validation every epoch
    return generate("rings", 600, tmp_path_factory.mktemp("rings_cycles"), seed=31)


# a half-width crnn from scratch: the mechanism at 40% of the default network's time
SMALL = {"width_multiplier": 0.5, "from_scratch": True}


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_default_run_may_chain_cycles_and_a_set_length_runs_one():
    assert TrainConfig().cycle_limit == MAX_CYCLES
    assert TrainConfig().cycle_budget(2000) == DEFAULT_BUDGET_MINUTES * 60
    assert TrainConfig(max_minutes=5).cycle_budget(80) == 300
    assert TrainConfig(epochs=20).cycle_limit == 1
    assert TrainConfig(epochs=20).cycle_budget(2000) is None
    assert TrainConfig(epochs=20, cycles=3).cycle_limit == 3
    assert TrainConfig(init="m.safetensors", fine_tune=True).cycle_limit == 1
    assert TrainConfig(schedule="until-converged").cycle_limit == 1
    with pytest.raises(ConfigError, match="`cycles` is 1 or more"):
        TrainConfig(cycles=0).validate()
    with pytest.raises(ConfigError, match="until-converged"):
        TrainConfig(cycles=2, schedule="until-converged").validate()


def test_the_default_budget_scales_with_the_training_images():
    budget = TrainConfig().cycle_budget
    # a full set gets the whole budget; 100 labelled images fine-tune in under 3 minutes
    assert budget(BUDGET_FULL_IMAGES) == budget(5000) == DEFAULT_BUDGET_MINUTES * 60
    assert budget(100) < 3 * 60
    assert budget(80) < budget(160) < budget(400) < budget(BUDGET_FULL_IMAGES)
    assert budget(160) == pytest.approx(2 * budget(80))
    assert budget(5) == budget(1) == MIN_BUDGET_MINUTES * 60


@pytest.mark.slow
def test_a_second_cycle_restarts_the_schedule_and_the_run_says_why_it_stopped(rings,
                                                                               tmp_path):
    out = tmp_path / "run"
    lines: list[str] = []
    result = train(rings, out, TrainConfig(epochs=3, cycles=3, **SMALL), log=lines.append,
                   show_progress=False)
    history = records(out)
    summary = json.loads((out / "summary.json").read_text())["schedule"]
    assert result.cycles >= 2 and summary["cycles"] == result.cycles
    assert history[-1]["epoch"] == 3 * result.cycles
    assert result.steps == result.cycles * result.steps_planned
    # the rate anneals to the end of cycle 1, then rises again at the start of cycle 2
    rates = {r["epoch"]: r["lr"] for r in history}
    assert rates[4] > 10 * rates[3]
    assert any(line.startswith("cycle 1 ended at epoch 3") for line in lines)
    stopped = [line for line in lines if line.startswith("stopped:")]
    assert len(stopped) == 1 and f"at epoch {3 * result.cycles}" in stopped[0]
    if result.cycles == 3:
        assert result.ended == "schedule" and "3 cycles" in result.why
    else:  # cycle 2 read no more validation images than cycle 1
        assert result.ended == "converged" and "cycle 2 did not improve" in result.why
    assert summary["why"] == result.why and summary["cycles_at_most"] == 3
    card = Recognizer.load(result.model_path).card.training
    assert card.cycles == result.cycles and card.why == result.why


@pytest.mark.slow
def test_a_run_paused_in_its_second_cycle_resumes_as_if_never_paused(rings, tmp_path):
    whole = tmp_path / "whole"
    train(rings, whole, TrainConfig(epochs=2, cycles=2, **SMALL), lambda _: None, False)
    paused = tmp_path / "paused"
    first = train(rings, paused, TrainConfig(epochs=2, cycles=2, stop_epoch=3, **SMALL),
                  lambda _: None, False)
    assert first.ended == "paused" and first.cycles == 2
    result = train(rings, paused, TrainConfig(epochs=2, cycles=2, resume=True, **SMALL),
                   lambda _: None, False)
    assert result.cycles == 2

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert without_time(records(paused)) == without_time(records(whole))


def test_chaining_stops_after_patience_cycles_in_a_row_without_a_gain():
    go_on = {"limit": 4, "budget": 900.0, "validating": True, "planned_steps": 3000}
    # cycle 2 left the best at 95%: the default patience of 1 stops, a patience of 2 goes on
    second = LoopState(cycle=2, cycle_best_before=0.95, cycle_start_elapsed=100.0)
    assert chain_verdict(second, 0.95, 200.0, patience=1, **go_on) == (
        "converged", "cycle 2 did not improve validation accuracy beyond 95.0%")
    assert chain_verdict(second, 0.95, 200.0, patience=2, **go_on) == ("", "")
    assert chain_verdict(second, 0.96, 200.0, patience=1, **go_on) == ("", "")  # a gain
    # cycle 3 after a stale cycle 2: a second stale cycle stops; a gain resets the count
    third = LoopState(cycle=3, cycle_best_before=0.95, stale_cycles=1, cycle_start_elapsed=200.0)
    assert chain_verdict(third, 0.95, 300.0, patience=2, **go_on) == (
        "converged", "cycles 2 to 3 did not improve validation accuracy beyond 95.0%")
    assert chain_verdict(third, 0.97, 300.0, patience=2, **go_on) == ("", "")
    # the most cycles, a full validation and the budget still end the chain first
    assert chain_verdict(LoopState(cycle=4), 0.9, 300.0, patience=2, **go_on)[0] == "schedule"
    assert chain_verdict(second, 1.0, 200.0, patience=2, **go_on) == (
        "converged", "validation reads every image")
    assert chain_verdict(third, 0.97, 860.0, patience=2, **go_on) == (
        "budget", "the 15-minute budget leaves no room for cycle 4")
    with pytest.raises(ConfigError, match="`cycle_patience` is 1 or more"):
        TrainConfig(cycle_patience=0).validate()
