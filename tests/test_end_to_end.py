"""Train briefly on generated rings captchas and check the model really reads them."""

import json

import pytest

from captchalab import Recognizer
from captchalab.cli import main
from captchalab.data import read_labelled_folder
from captchalab.data.preprocess import fitted_height
from captchalab.evaluation import evaluate


def test_training_learns_far_above_chance(trained_model, rings_test):
    # chance for six digits from six symbols is (1/6)**6, about 0.002 %
    result = evaluate(Recognizer.load(trained_model), rings_test, show_progress=False)
    assert result.metrics["char_accuracy"] > 0.8
    assert result.metrics["sequence_accuracy"] > 0.3


def test_training_writes_metrics_curves_and_metadata(trained_model, rings_train):
    run = trained_model.parent
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, len(lines) + 1))
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = Recognizer.load(trained_model).card
    assert card.alphabet == "234568" and card.label_lengths == (6,)
    assert card.decoding.length == 6 and card.data.train_count == 540
    assert 0 <= card.metrics["sequence_accuracy"] <= 1
    # the height from the data: six characters on rings' canvas need more than 32 pixels
    sizes = [sample.size for sample in read_labelled_folder(rings_train).samples]
    assert card.preprocessing.height == fitted_height(sizes, [6]) > 32
    assert card.training.ended == "schedule" and card.training.best_epoch <= 14
    assert card.training.steps_run == card.training.steps_planned == 14 * 17


def test_every_input_kind_gives_the_same_prediction(trained_model, rings_test):
    import numpy as np
    from PIL import Image

    recognizer = Recognizer.load(trained_model)
    path = read_labelled_folder(rings_test).samples[0].path
    from_path = recognizer.predict(path)
    assert recognizer.predict(str(path)) == from_path
    assert recognizer.predict(path.read_bytes()) == from_path
    assert recognizer.predict(Image.open(path)) == from_path
    assert recognizer.predict(np.asarray(Image.open(path))) == from_path
    batch = recognizer.predict([path, path.read_bytes()])
    assert [p.text for p in batch] == [from_path.text] * 2
    assert len(from_path.char_confidences) == len(from_path.text)
    assert 0 <= from_path.confidence <= min(from_path.char_confidences) + 1e-6


@pytest.mark.slow
def test_a_finished_run_is_not_stretched_by_resuming(rings_train, tmp_path, capsys):
    """Its schedule ended (the learning rate annealed): more epochs would restart it from
    the middle, so resuming says why it stops and how to train longer."""
    args = ["train", str(rings_train), "--out", str(tmp_path), "--epochs", "2", "--quiet"]
    assert main(args) == 0
    assert main([*args[:-3], "--epochs", "3", "--resume", "--quiet"]) == 0
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--init" in err and "more --epochs" in err
