"""Constraints inside the decoder: the constrained reading is the most probable allowed
reading (checked against brute force), its confidences are renormalised probabilities, and
constraints the model cannot meet are one-line errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from captchalab.data import Alphabet, Preprocessing
from captchalab.models import build
from captchalab.runtime import ModelCard, Recognizer, ctc, save_model_file
from captchalab.runtime.constraints import (
    ConstraintError,
    Constraints,
    constrain_outputs,
    symbol_groups,
)
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import get_decoder
from captchalab.runtime.torch_backend import state_to_numpy


def _random_log_probs(seed: int, frames: int = 6, classes: int = 5) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, 2, size=(1, frames, classes))
    return logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))


@pytest.mark.parametrize("seed", range(12))
def test_constrained_ctc_reading_is_the_best_allowed_string(seed):
    alphabet = Alphabet("abcd")
    constraints = Constraints.make(allowed="bd", length=(2, 3))
    reduced, groups = symbol_groups(alphabet, constraints)
    assert reduced.symbols == "bd" and groups == [[2], [4]]
    log_probs = constrain_outputs(_random_log_probs(seed), "ctc", groups)
    assert np.allclose(np.exp(log_probs).sum(axis=2), 1.0)  # renormalised over blank, b, d
    candidates = [labels for n in (2, 3) for labels in itertools.product((1, 2), repeat=n)]
    scores = {labels: ctc.sequence_log_prob(log_probs[0], labels) for labels in candidates}
    best = max(scores, key=scores.get)
    decoded = get_decoder("ctc")(log_probs, DecodingSettings("beam", 32, bounds=(2, 3)))[0]
    assert decoded.labels == best
    assert decoded.confidence == pytest.approx(np.exp(scores[best]), rel=1e-6)


def test_positional_readings_take_the_best_allowed_symbol_per_position():
    logits = np.random.default_rng(3).normal(0, 2, size=(2, 4, 5))
    log_probs = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    _, groups = symbol_groups(Alphabet("abcd"), Constraints.make(allowed="ac"))
    constrained = constrain_outputs(log_probs, "positions", groups)
    decoded = get_decoder("positions")(constrained, DecodingSettings())
    for image, reading in zip(log_probs, decoded):
        expected = [1 + int(np.argmax(p[[1, 3]])) for p in image]  # a or c, by its own odds
        assert list(reading.labels) == expected
        shares = [np.exp(p[[1, 3]]).max() / np.exp(p[[1, 3]]).sum() for p in image]
        assert reading.char_confidences == pytest.approx(shares)


def test_case_adds_up_both_cases_of_a_symbol():
    alphabet = Alphabet("aAb")
    reduced, groups = symbol_groups(alphabet, Constraints.make(case="lower"))
    assert reduced.symbols == "ab" and groups == [[1, 2], [3]]
    frame = np.log(np.array([[[0.1, 0.3, 0.35, 0.25]]]))  # blank, a, A, b
    merged = np.exp(constrain_outputs(frame, "ctc", groups))[0, 0]
    assert merged == pytest.approx([0.1, 0.65, 0.25])
    upper, _ = symbol_groups(Alphabet("ab"), Constraints.make(case="upper"))
    assert upper.symbols == "AB"  # a case-folded model, read for a site that wants capitals


@pytest.mark.parametrize("kwargs, message", [
    ({"allowed": "xyz"}, "not in the model's alphabet"),
    ({"length": 0}, "at least 1"),
    ({"length": (4, 2)}, "min <= max"),
    ({"case": "title"}, "case must be one of"),
    ({"allowed": ""}, "allowed is empty"),
])
def test_impossible_constraints_are_one_line_errors(kwargs, message):
    with pytest.raises(ConstraintError, match=message) as raised:
        symbol_groups(Alphabet("abc"), Constraints.make(**kwargs))
    assert "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def tiny_recognizers(tmp_path_factory) -> dict[str, Recognizer]:
    """Untrained crnn and multihead models on alphabet 'abcd': constraints act on any outputs."""
    folder = tmp_path_factory.mktemp("tiny")
    made = {}
    for family, config in (("crnn", {}), ("multihead", {"length": 3})):
        torch.manual_seed(0)
        model = build(family, num_classes=5, height=32, width=64, **config).eval()
        card = ModelCard(family=family, config=model.config, decoder=model.decoder,
                         alphabet="abcd", preprocessing=Preprocessing(32, 64),
                         label_lengths=(3,))
        path = save_model_file(folder / f"{family}.safetensors", state_to_numpy(model), card)
        made[family] = Recognizer.load(path)
    return made


def test_the_recognizer_reads_only_allowed_symbols_of_the_asked_length(tiny_recognizers):
    images = list(np.random.default_rng(1).integers(0, 256, (6, 32, 64), dtype=np.uint8))
    crnn = tiny_recognizers["crnn"]
    for reading in crnn.predict(images, allowed="bc", length=(2, 3), case="upper"):
        assert set(reading.text) <= {"B", "C"} and 2 <= len(reading.text) <= 3
        assert 0.0 <= reading.confidence <= 1.0
    with pytest.raises(ConstraintError, match="cannot read 99 characters"):
        crnn.predict(images[0], length=99)
    multihead = tiny_recognizers["multihead"]
    assert all(set(r.text) <= {"a"} for r in multihead.predict(images, allowed="a"))
    with pytest.raises(ConstraintError, match="reads exactly 3 characters; length 4"):
        multihead.predict(images[0], length=4)


def test_the_service_reads_under_a_requests_constraints(tiny_recognizers):
    """JSON keys, form fields and query parameters carry allowed, length and case; the same
    image read under different constraints in one batch gets each its own reading."""
    import base64
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from captchalab.service import ServedModel, create_app

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 64), dtype=np.uint8)).save(
        buffer, format="PNG")
    image = buffer.getvalue()
    served = ServedModel.load(tiny_recognizers["crnn"].path, "tiny")
    with TestClient(create_app([served])) as client:
        plain = client.post("/v1/recognize", json={"image": base64.b64encode(image).decode()})
        constrained = client.post("/v1/recognize", json={
            "image": base64.b64encode(image).decode(), "allowed": "bc", "length": [2, 3],
            "case": "upper"})
        form = client.post("/v1/recognize?length=2-3", files={"file": ("x.png", image)},
                           data={"allowed": "bc", "case": "upper"})
        refused = client.post("/v1/recognize", files={"file": ("x.png", image)},
                              data={"allowed": "xyz"})
        impossible = client.post("/v1/recognize?length=99", files={"file": ("x.png", image)})
    assert plain.status_code == constrained.status_code == form.status_code == 200
    reading = constrained.json()["results"][0]
    assert set(reading["text"]) <= {"B", "C"} and 2 <= len(reading["text"]) <= 3
    form_reading = form.json()["results"][0]
    assert form_reading["text"] == reading["text"]
    assert form_reading["confidence"] == pytest.approx(reading["confidence"])
    expected = tiny_recognizers["crnn"].predict(image, allowed="bc", length=(2, 3), case="upper")
    assert reading["text"] == expected.text
    assert reading["confidence"] == pytest.approx(expected.confidence)
    assert refused.status_code == 400 and "not in the model's alphabet" in refused.json()["error"]
    assert impossible.status_code == 400 and "cannot read 99" in impossible.json()["error"]


def test_a_model_file_keeps_default_constraints_that_calls_override(tiny_recognizers, tmp_path):
    from captchalab.export import export_onnx

    source = tiny_recognizers["crnn"].path
    onnx_path = export_onnx(source, tmp_path / "digits.onnx",
                            constraints=Constraints.make(allowed="ab", length=3))
    exported = Recognizer.load(onnx_path)
    assert exported.card.constraints == Constraints("ab", (3, 3), "as-trained")
    image = np.random.default_rng(4).integers(0, 256, (32, 64), dtype=np.uint8)
    default = exported.predict(image)
    assert set(default.text) <= {"a", "b"} and len(default.text) == 3
    assert default.text == tiny_recognizers["crnn"].predict(image, allowed="ab", length=3).text
    wider = exported.predict(image, allowed="abcd", length=(1, 5))  # the call overrides
    assert wider.text == tiny_recognizers["crnn"].predict(image, length=(1, 5)).text
    with pytest.raises(ConstraintError, match="not in the model's alphabet"):
        export_onnx(source, tmp_path / "bad.onnx", constraints=Constraints.make(allowed="z"))


def test_the_cli_reads_under_constraints_and_train_stores_them(tiny_recognizers, tmp_path,
                                                              capsys):
    import json

    from PIL import Image

    from captchalab.cli import main
    from captchalab.generators import generate
    from captchalab.runtime import read_card

    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (32, 64), dtype=np.uint8)
                    ).save(image)
    model = tiny_recognizers["crnn"].path
    assert main(["predict", model, str(image), "--allowed", "ab", "--length", "2-3",
                 "--case", "upper", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row["text"]) <= {"A", "B"} and 2 <= len(row["text"]) <= 3
    assert main(["predict", model, str(image), "--allowed", "q"]) == 1
    assert "not in the model's alphabet" in capsys.readouterr().err
    data = generate("rings", 30, tmp_path / "rings", seed=3, workers=1)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--epochs", "1", "--length", "6",
                 "--allowed", "23456", "--quiet"]) == 0
    assert read_card(out / "model.safetensors").constraints == Constraints("23456", (6, 6))
