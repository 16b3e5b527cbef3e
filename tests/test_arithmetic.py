"""Arithmetic captchas: the answer parser (never eval), the generator preset, and models that
know their readings are questions."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from captchalab.data import Preprocessing, read_labelled_folder
from captchalab.generators import generate, load_scheme, render
from captchalab.models import build
from captchalab.runtime import ModelCard, Recognizer, save_model_file
from captchalab.runtime.arithmetic import ExpressionError, answer, is_expression
from captchalab.runtime.torch_backend import state_to_numpy
from captchalab.training.data import all_expressions


@pytest.mark.parametrize("text, value", [
    ("7+3=?", 10), ("12×4=", 48), ("18÷6=?", 3), ("9-9", 0), ("3+4×5=", 23),
    ("20÷4×3=?", 15), ("2x3=?", 6), ("2*3", 6), ("15/5=", 3), ("10-2-3=?", 5),
    ("007+1=", 8), ("100-1=?", 99),
])
def test_answers_follow_the_usual_precedence(text, value):
    assert answer(text) == value and is_expression(text)


@pytest.mark.parametrize("text, reason", [
    ("7÷0=?", "division by zero"), ("7÷2=", "not a whole number"), ("7+=?", "no number after"),
    ("+7=", "an operator without a number before it"), ("=?", "no number in it"),
    ("42", "no operator"), ("7+a=", "'a' is not part"), ("__import__('os')", "not part"),
    ("", "no number in it"), ("7++3", "an operator without a number before it"),
])
def test_a_reading_without_an_answer_says_why(text, reason):
    with pytest.raises(ExpressionError, match=reason) as raised:
        answer(text)
    assert "\n" not in str(raised.value)
    assert not is_expression(text) or "division" in reason or "whole" in reason


def test_the_preset_draws_questions_with_whole_answers():
    scheme = load_scheme("arithmetic")
    labels = [render(scheme, seed=3, index=i).label for i in range(300)]
    assert all(set(label) <= set(scheme.alphabet) for label in labels)
    assert all(scheme.length[0] <= len(label) <= scheme.length[1] for label in labels)
    values = [answer(label) for label in labels]  # every question has an answer
    assert min(values) >= 0
    assert {label[-2:] == "=?" for label in labels} == {True, False}  # "=?" and "="
    used = set("".join(labels))
    assert set("+-×÷*") <= used and "x" not in used  # x is ×'s look-alike: not both
    assert all_expressions(labels) and not all_expressions(["ab12", "x9"])


def test_labels_with_unsafe_symbols_go_to_labels_csv(tmp_path):
    out = generate("arithmetic", 12, tmp_path / "questions", seed=1, workers=1)
    rows = list(csv.reader((out / "labels.csv").open()))
    assert rows[0] == ["filename", "label"] and len(rows) == 13
    assert all("?" not in name for name, _ in rows[1:])
    folder = read_labelled_folder(out)
    assert sorted(s.label for s in folder.samples) == sorted(label for _, label in rows[1:])
    annotations = [json.loads(line) for line in (out / "annotations.jsonl").open()]
    assert {a["file"] for a in annotations} == {name for name, _ in rows[1:]}


def test_a_model_of_questions_answers_by_default(tmp_path):
    torch.manual_seed(0)
    alphabet = load_scheme("arithmetic").alphabet
    model = build("crnn", num_classes=len(alphabet) + 1, height=32, width=96).eval()
    card = ModelCard(family="crnn", config=model.config, decoder="ctc", alphabet=alphabet,
                     preprocessing=Preprocessing(32, 96), reads="expression")
    recognizer = Recognizer.load(save_model_file(tmp_path / "m.safetensors",
                                                 state_to_numpy(model), card))
    image = np.random.default_rng(0).integers(0, 256, (32, 96), dtype=np.uint8)
    reading = recognizer.predict(image, allowed="0123456789+=?", length=(4, 6))
    shown = reading.to_dict()
    if is_expression(reading.text):
        assert shown["answer"] == answer(reading.text)
    else:  # an untrained model may read no question: the answer says why instead
        assert shown["answer"] is None and shown["answer_error"]
        with pytest.raises(ExpressionError):
            _ = reading.answer


def test_a_crnn_for_questions_reads_its_columns_with_an_lstm():
    """Questions are the one kind of label whose default crnn keeps the LSTM across its
    columns (a minus sign and a noise line look alike column by column)."""
    from captchalab.models import family_class
    from captchalab.models.family import DataShape

    crnn = family_class("crnn")
    shape = DataShape(19, 32, 96, (4, 5, 6), 160.0)
    assert crnn.configure(shape)["sequence"] == "none"
    assert crnn.configure(replace(shape, expressions=True))["sequence"] == "lstm"
    given = crnn.configure(replace(shape, expressions=True), sequence="none")
    assert given["sequence"] == "none"  # an explicit --sequence wins
