"""Seed 002's staged restarts: the plan, the ranking, and a run paused between stages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from captchalab.cli import main
from captchalab.generators import generate
from captchalab.runtime.model_file import load_model_file
from captchalab.training import TrainConfig, train
from captchalab.training.restarts import RestartPlan, rank_by_validation_loss


@pytest.fixture(scope="module")
def small_rings(tmp_path_factory):
    return generate("rings", 160, tmp_path_factory.mktemp("rings_small"), seed=21)


def test_plan_defaults_double_each_stage_and_end_at_the_full_schedule():
    assert RestartPlan.make([20, 10, 1], None, 100).ends == (25, 50, 100)
    assert RestartPlan.make([20, 10, 1], [10, 40], 100).ends == (10, 40, 100)
    assert RestartPlan.make([4, 1], [3, 9], 9).ends == (3, 9)
    assert RestartPlan.make([5], None, 7) == RestartPlan((5,), (7,))


@pytest.mark.parametrize(("counts", "ends", "message"), [
    ([3, 5], None, "same or fewer"),
    ([3, 0], None, "at least 1"),
    ([3, 2, 1], [4], "1 stage end.s. for 3 stages"),
    ([3, 1], [12], "grow from"),
    ([3, 1], [2, 8], "full schedule, epoch 10"),
])
def test_plan_refuses_impossible_stages(counts, ends, message):
    with pytest.raises(ValueError, match=message):
        RestartPlan.make(counts, ends, 10)


def test_ranking_prefers_low_validation_loss_then_accuracy():
    records = {0: {"val_loss": 0.9, "val_accuracy": 0.5}, 1: {"val_loss": 0.4, "val_accuracy": 0.2},
               2: {"val_loss": 0.4, "val_accuracy": 0.3}, 3: {"val_accuracy": 0.9}}
    assert rank_by_validation_loss(records) == [2, 1, 0, 3]


@pytest.mark.slow
def test_a_paused_and_resumed_run_is_the_uninterrupted_run(small_rings, tmp_path):
    """Stages pause runs: resuming (weights, optimiser, schedule, random state) must give
    exactly the weights of a run that never stopped."""
    config = TrainConfig(epochs=3, seed=4)
    straight = train(small_rings, tmp_path / "straight", config, lambda _: None, False)
    paused = TrainConfig(epochs=3, seed=4, stop_epoch=1)
    train(small_rings, tmp_path / "paused", paused, lambda _: None, False)
    resumed = train(small_rings, tmp_path / "paused", TrainConfig(epochs=3, seed=4, resume=True),
                    lambda _: None, False)
    history = [json.loads(line)["epoch"] for line in
               (tmp_path / "paused" / "metrics.jsonl").read_text().splitlines()]
    assert history[0] == 1 and history[-1] == 3 and history == sorted(set(history))
    a = load_model_file(straight.model_path).tensors
    b = load_model_file(resumed.model_path).tensors
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_restarts_keep_the_best_runs_and_copy_the_winner(small_rings, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", str(small_rings), "--out", str(out), "--epochs", "3", "--quiet",
                 "--restarts", "3,2,1", "--restart-epochs", "1,2"]) == 0
    report = json.loads((out / "restarts.json").read_text())
    assert report["plan"] == {"counts": [3, 2, 1], "ends": [1, 2, 3]}
    for stage, kept in zip(report["stages"], (2, 1, 1)):
        runs = stage["runs"]
        best = sorted(runs, key=lambda r: r["val_loss"])[:kept]
        assert {r["seed"] for r in runs if r["kept"]} == {r["seed"] for r in best}
        assert stage["val_accuracy"]["min"] <= stage["val_accuracy"]["max"]
    winner = report["winner"]
    assert [r["seed"] for r in report["stages"][-1]["runs"]] == [winner]
    winner_dir = out / "restarts" / f"seed-{winner}"
    assert (out / "model.safetensors").read_bytes() == (
        winner_dir / "model.safetensors").read_bytes()
    dropped = next(r["seed"] for r in report["stages"][0]["runs"] if not r["kept"])
    epochs = [json.loads(line)["epoch"] for line in
              (out / "restarts" / f"seed-{dropped}" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]  # a run dropped after stage 1 was never trained further
    assert (out / "restarts.png").read_bytes()[:4] == b"\x89PNG"
    assert f"seed {winner} won" in capsys.readouterr().out
    # a second run must not silently replace the first
    assert main(["train", str(small_rings), "--out", str(out), "--epochs", "3", "--quiet",
                 "--restarts", "3,1"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_restarts_refuse_a_time_budget_and_schemes(small_rings, tmp_path, capsys):
    assert main(["train", str(small_rings), "--out", str(tmp_path), "--restarts", "2,1",
                 "--max-minutes", "1"]) == 1
    assert "give --epochs, not --max-minutes" in capsys.readouterr().err
    assert main(["train", "--scheme", "rings", "--out", str(tmp_path), "--restarts", "2,1"]) == 1
    assert "does not apply to --scheme" in capsys.readouterr().err
    assert main(["train", str(small_rings), "--out", str(tmp_path), "--restart-epochs", "2"]) == 1
    assert "--restart-epochs applies to --restarts" in capsys.readouterr().err
