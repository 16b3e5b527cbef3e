"""Training with torchrun: sharding, rank handling, and a real 2-process run on CPU (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from captchalab import Recognizer
from captchalab.cli import main
from captchalab.generators import generate
from captchalab.training.distributed import Distributed


@pytest.mark.parametrize("length", [10, 11, 1])
def test_shards_cover_the_epoch_with_equal_shares(length):
    order = torch.randperm(length, generator=torch.Generator().manual_seed(0))
    shards = [Distributed(rank, 2).shard(order) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == -(-length // 2)
    assert set(torch.cat(shards).tolist()) == set(order.tolist())
    assert torch.equal(Distributed().shard(order), order)
    assert Distributed(0, 2).batch_size(32) == 16 and Distributed(0, 3).batch_size(32) == 11


def test_ranks_come_from_torchruns_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert Distributed.from_environment() == Distributed(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert Distributed.from_environment() == Distributed(3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="does not fit WORLD_SIZE 4"):
        Distributed.from_environment()


def _torchrun(data, out, *options: str) -> tuple[int, str, str]:
    """``torchrun --nproc_per_node=2 -m captchalab train DATA --out OUT OPTIONS``."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--standalone", "-m", "captchalab", "train", str(data), "--out", str(out),
         *options, "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
        start_new_session=True)
    try:
        stdout, stderr = launcher.communicate(timeout=600)
    finally:  # a hung run takes its worker processes with it
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    return launcher.returncode, stdout, stderr


@pytest.mark.slow
def test_two_processes_train_one_model_written_by_rank_0(tmp_path):
    data = generate("rings", 240, tmp_path / "data", seed=41)
    out = tmp_path / "out"
    code, stdout, stderr = _torchrun(data, out, "--epochs", "6")
    assert code == 0, stderr[-2000:]
    assert "2 processes" in stderr
    assert stdout.count("validation:") == 1  # rank 0 reports, rank 1 stays quiet
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors", "curves.png", "metrics.jsonl", "model.safetensors",
        "summary.json"]  # and no temporary file left by a second writer
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [3, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert len(Recognizer.load(out / "model.safetensors").predict(
        sorted(data.glob("*.png"))[0]).text) > 0


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["budget", "budget", "budget", "schedule", "schedule"])
def test_every_rank_ends_together_and_rank_0_writes_a_whole_model(ending, tmp_path):
    """The ranks once ended apart: a rank that left first tore down the process group while
    rank 0 still validated and wrote, aborted, and the launcher then killed rank 0. Runs
    ended by their time budget mid-schedule and runs that finish their schedule must both
    end cleanly, each with a complete model file."""
    data = generate("rings", 160, tmp_path / "data", seed=43)
    out = tmp_path / "out"
    options = ["--max-minutes", "0.15"] if ending == "budget" else ["--epochs", "3"]
    code, stdout, stderr = _torchrun(data, out, *options)
    assert code == 0, stderr[-2000:]
    assert "terminate called" not in stderr and "SIGABRT" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schedule"]["ended"] == ending
    assert Recognizer.load(out / "model.safetensors").card.training.ended == ending
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_series_of_trainings_refuse_torchrun(rings_train, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", str(rings_train), "--out", str(tmp_path), "--restarts", "2,1"]) == 1
    assert "runs in one process; start it without torchrun" in capsys.readouterr().err
    assert main(["compare", str(rings_train), "--out", str(tmp_path)]) == 1
    assert "compare runs in one process" in capsys.readouterr().err
