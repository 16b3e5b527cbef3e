"""Self-training on unlabelled images, stopped by held-out labelled images."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from captchalab import Recognizer
from captchalab.cli import main
from captchalab.data import label_from_filename
from captchalab.generators import generate
from captchalab.training.self_training import next_round, pseudo_labels, unlabelled_images


@pytest.mark.parametrize(("accuracies", "expected"), [
    ([0.5], (True, 0)),
    ([0.5, 0.6], (True, 1)),
    ([0.5, 0.6, 0.6], (True, 2)),  # a tie goes on, and the later round is the best
    ([1.0, 1.0, 1.0, 1.0], (True, 3)),  # a few validation images: every round ties
    ([0.5, 0.6, 0.55], (False, 1)),  # a drop stops
    ([0.5, 0.4], (False, 0)),
])
def test_rounds_stop_when_held_out_accuracy_drops(accuracies, expected):
    assert next_round(accuracies) == expected


def unlabelled_copy(folder, out):
    """The images of a generated folder under names that carry no label; the true labels."""
    out.mkdir()
    truths = {}
    for i, path in enumerate(sorted(folder.glob("*.png"))):
        shutil.copy(path, out / f"u{i:04d}.png")
        truths[f"u{i:04d}.png"] = label_from_filename(path.name)
    return truths


def test_pseudo_labels_keep_confident_readings_of_known_length(trained_model, rings_test,
                                                               tmp_path):
    truths = unlabelled_copy(rings_test, tmp_path / "u")
    (tmp_path / "u" / "broken.png").write_bytes(b"not a png")
    images, unreadable = unlabelled_images(tmp_path / "u")
    assert unreadable == 1 and len(images) == len(truths)
    recognizer = Recognizer.load(trained_model)
    everything = pseudo_labels(recognizer, images, 0.0, [6])
    confident = pseudo_labels(recognizer, images, 0.9, [6])
    assert 0 < len(confident) <= len(everything) <= len(images)
    assert all(len(s.label) == 6 for s in everything)
    assert pseudo_labels(recognizer, images, 0.0, [4]) == []

    def accuracy(samples):
        return sum(s.label == truths[s.path.name] for s in samples) / len(samples)

    assert accuracy(confident) >= accuracy(everything)
    assert accuracy(confident) > 0.9


@pytest.mark.slow
def test_self_training_writes_each_round_and_keeps_the_best(tmp_path, capsys):
    labelled = generate("rings", 120, tmp_path / "labelled", seed=31)
    unlabelled_copy(generate("rings", 60, tmp_path / "pool", seed=32), tmp_path / "u")
    out = tmp_path / "out"
    assert main(["train", str(labelled), "--out", str(out), "--epochs", "2", "--quiet",
                 "--unlabelled", str(tmp_path / "u"), "--pseudo-threshold", "0",
                 "--self-training-rounds", "1"]) == 0
    report = json.loads((out / "self_training.json").read_text())
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[0]["pseudo_labelled"] == 0
    assert 0 <= rounds[1]["pseudo_labelled"] <= 60
    best = report["best_round"]
    assert report["dropped"] == (rounds[1]["val_accuracy"] < rounds[0]["val_accuracy"])
    assert best == max((0, 1), key=lambda r: (rounds[r]["val_accuracy"], r))
    assert (out / "model.safetensors").read_bytes() == (
        out / f"round-{best}" / "model.safetensors").read_bytes()
    summary = json.loads((out / f"round-{best}" / "summary.json").read_text())
    assert summary["val_count"] == 12  # the held-out labelled images, the same every round
    assert f"round {best} kept" in capsys.readouterr().out


def test_self_training_refuses_what_it_cannot_do(rings_train, tmp_path, capsys):
    assert main(["train", str(rings_train), "--out", str(tmp_path / "a"), "--unlabelled",
                 str(tmp_path / "missing")]) == 1
    assert "missing: not a folder of images" in capsys.readouterr().err
    assert main(["train", str(rings_train), "--out", str(tmp_path / "b"), "--unlabelled",
                 str(tmp_path), "--model", "multilabel"]) == 1
    assert "reads no strings" in capsys.readouterr().err


def test_self_training_weighs_the_labelled_folders_like_train(tmp_path, capsys):
    original = generate("rings", 40, tmp_path / "original", seed=33)
    new = generate("rings", 10, tmp_path / "new", seed=34)
    unlabelled_copy(generate("rings", 8, tmp_path / "pool", seed=35), tmp_path / "u")
    assert main(["train", str(original), str(new), "--out", str(tmp_path / "out"),
                 "--epochs", "1", "--batch-size", "8", "--balance-folders", "--unlabelled",
                 str(tmp_path / "u"), "--self-training-rounds", "1", "--from-scratch"]) == 0
    shown = "".join(capsys.readouterr())  # the log, whichever stream it went to
    repeats = int(re.search(r"each folder weighs the same: original x1, new x(\d+)",
                            shown).group(1))
    steps = int(re.search(r"round 0: .* 1 epochs \((\d+) steps\)", shown).group(1))
    assert repeats > 1 and steps > 45 // 8 + 1  # the new folder's images repeated in round 0


def test_a_model_of_few_labels_is_told_about_unlabelled_images(trained_model, tmp_path):
    from dataclasses import replace

    from captchalab.runtime.model_file import load_model_file, save_model_file
    from captchalab.training.recipes import FEW_LABELS, with_few_labels_tip
    from captchalab.training.trainer import TrainResult

    model = load_model_file(trained_model)
    few = save_model_file(tmp_path / "few.safetensors", model.tensors, replace(
        model.card, data=replace(model.card.data, train_count=50)))
    reading = Recognizer.load(trained_model).reading

    def notes(path, accuracy):
        result = TrainResult(path, {"sequence_accuracy": accuracy}, 1, 0.1, 0,
                             reading=reading)
        return with_few_labels_tip(result).notes

    assert any("--unlabelled DIR" in note for note in notes(few, 0.8))
    assert notes(few, 0.995) == []  # it reads nearly everything already
    assert model.card.data.train_count >= FEW_LABELS and notes(trained_model, 0.8) == []
