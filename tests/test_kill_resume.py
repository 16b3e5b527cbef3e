"""Nothing lost: a training process killed with SIGKILL resumes and ends as good; an
interrupted write leaves the old file whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from captchalab.cli import main
from captchalab.fileio import atomic_write_bytes
from captchalab.runtime import Recognizer
from captchalab.runtime.model_file import read_card
from captchalab.training.checkpoint import load_checkpoint


def test_training_killed_mid_run_resumes_to_the_same_quality(rings_train, trained_model,
                                                             tmp_path, capsys):
    """The same run as the ``trained_model`` fixture (14 epochs, seed 0, 10% validation),
    killed with SIGKILL after its third checkpoint, then resumed with --resume."""
    out = tmp_path / "run"
    args = ["train", str(rings_train), "--out", str(out), "--epochs", "14", "--seed", "0",
            "--val-split", "0.1", "--quiet"]
    process = subprocess.Popen([sys.executable, "-m", "captchalab.cli", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.monotonic() + 300
    try:
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no third checkpoint in 5 minutes"
            if checkpoint.exists() and load_checkpoint(checkpoint).state.epoch >= 3:
                break
            time.sleep(0.2)
        time.sleep(0.7)  # somewhere inside the next epoch
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    killed_at = load_checkpoint(checkpoint).state.epoch
    assert killed_at < 14
    Recognizer.load(out / "model.safetensors")  # what the kill left is whole and loads
    assert main([*args, "--resume"]) == 0
    assert f"resuming at epoch {killed_at + 1}" in capsys.readouterr().err
    epochs = [json.loads(line)["epoch"]
              for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 15))  # each epoch once, none lost, none doubled
    resumed = read_card(out / "model.safetensors").metrics
    uninterrupted = read_card(trained_model).metrics
    assert resumed["count"] == uninterrupted["count"]  # the same validation images
    assert resumed["sequence_accuracy"] >= uninterrupted["sequence_accuracy"] - 0.05


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old contents")

    def killed(*_):
        raise KeyboardInterrupt  # the process dies between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left
