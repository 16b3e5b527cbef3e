"""The general base model: trained on the universe, resumable, read as ``base``, and where
every crnn training starts unless told otherwise."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from captchalab.cli import main
from captchalab.experiments.audit import attacker
from captchalab.generators import generate
from captchalab.generators.universe import UNIVERSE_VERSION
from captchalab.runtime import Recognizer
from captchalab.runtime.model_file import (
    PACKAGED_BASE_MODEL,
    ModelFileError,
    load_model_file,
    read_card,
    resolve_model,
    save_model_file,
)
from captchalab.training import TrainConfig, train
from captchalab.training.base_model import CONTINUE_RATE, base_config, train_base_model
from captchalab.training.config import FROM_BASE_RATE, from_base_rate

TINY = {"epochs": 2, "epoch_images": 128}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A base model of two tiny epochs: untrained, but made exactly as the real one is."""
    out = tmp_path_factory.mktemp("base")
    return train_base_model(out, replace(base_config(**TINY), stream_val=64), log=lambda _: None,
                            show_progress=False)


@pytest.fixture
def with_base(tiny_base, monkeypatch) -> Path:
    monkeypatch.setenv("CAPTCHALAB_BASE_MODEL", str(tiny_base))
    return tiny_base


@pytest.fixture(scope="module")
def classic(tmp_path_factory) -> Path:
    return generate("classic", 60, tmp_path_factory.mktemp("classic"), seed=3)


@pytest.mark.slow
def test_the_base_model_card_says_what_it_was_trained_on(tiny_base):
    card = read_card(tiny_base)
    assert card.family == "crnn" and card.preprocessing.height == 32
    assert card.data.scheme == "universe"
    about = card.about
    assert "universe" in about["trained_on"] and "DejaVuSans.ttf" in about["fonts"]
    assert about["steps"] == card.training.steps_run == 4
    assert about["images_seen"] == 4 * 64
    assert about["hardware"].startswith(("CPU", "GPU")) and about["date"] and about["command"]
    assert about["universe_version"] == UNIVERSE_VERSION
    assert card.constraints.case == "lower"  # zero-shot readings are case-folded


@pytest.mark.slow
def test_an_interrupted_base_model_run_resumes(tmp_path):
    config = replace(base_config(**TINY), stream_val=64)
    first = train_base_model(tmp_path, replace(config, stop_epoch=1), log=lambda _: None,
                             show_progress=False)
    assert read_card(first).training.epochs_run == 1
    assert (tmp_path / "checkpoint.safetensors").is_file()
    lines: list[str] = []
    done = train_base_model(tmp_path, config, log=lines.append, show_progress=False,
                            resume=True)
    card = read_card(done)
    assert card.training.epochs_run == 2 and card.about["steps"] == 4
    assert any("resuming" in line for line in lines)
    assert any(line.startswith("epoch 2: step 4, 256 images seen") for line in lines)


@pytest.mark.slow
def test_a_base_model_continues_from_its_weights_and_counts_the_earlier_steps(tiny_base,
                                                                           tmp_path):
    config = replace(base_config(**TINY, init=str(tiny_base), seed=1), stream_val=64)
    assert config.learning_rate == CONTINUE_RATE and not config.from_scratch
    first = train_base_model(tmp_path, replace(config, stop_epoch=1), log=lambda _: None,
                             show_progress=False)  # interrupted after one epoch ...
    lines: list[str] = []
    done = train_base_model(tmp_path, replace(config, init=None), log=lines.append,
                            show_progress=False, resume=True)  # ... and resumed
    assert done == first
    card, earlier = read_card(done), read_card(tiny_base).about
    assert card.training.started_from == str(tiny_base)
    assert card.about["steps"] == earlier["steps"] + card.training.steps_run == 8
    assert card.about["images_seen"] == 8 * 64
    assert card.about["continued_from"]["steps"] == 4
    assert card.about["continued_from"]["universe_version"] == UNIVERSE_VERSION
    assert card.about["minutes"] >= earlier["minutes"]


@pytest.mark.slow
def test_continuing_a_model_that_is_not_a_base_is_a_one_line_error(tiny_base, tmp_path):
    model, base = tmp_path / "m.safetensors", load_model_file(tiny_base)
    save_model_file(model, base.tensors, replace(base.card, about={}))
    with pytest.raises(ModelFileError, match="not a base model"):
        train_base_model(tmp_path / "out", base_config(**TINY, init=str(model)),
                         log=lambda _: None, show_progress=False)


@pytest.mark.slow
def test_train_starts_from_the_base_model_by_default_with_its_own_input(with_base, classic,
                                                                        tmp_path):
    lines: list[str] = []
    result = train(classic, tmp_path / "run", TrainConfig(epochs=1), log=lines.append,
                   show_progress=False)
    card = read_card(result.model_path)
    assert card.training.started_from == "the base model"
    assert any(line.startswith("starting from the base model") for line in lines)
    base = read_card(with_base)
    assert card.alphabet != base.alphabet and set(card.alphabet) <= set(base.alphabet)
    assert card.preprocessing.width != base.preprocessing.width  # the data's own aspect
    assert card.constraints.case == "as-trained"  # the base's zero-shot folding stays there
    peak = json.loads((tmp_path / "run" / "summary.json").read_text())["schedule"]
    train_count = read_card(result.model_path).data.train_count
    assert peak["peak_learning_rate"] == pytest.approx(TrainConfig().learning_rate
                                                       * from_base_rate(train_count))


def test_a_full_labelled_set_adds_column_context_to_the_base_it_starts_from(
        with_base, classic, tmp_path, monkeypatch):
    from captchalab.models.crnn import CRNN

    monkeypatch.setattr(CRNN, "CONTEXT_IMAGES", 40)  # classic's 54 training images: "full"
    lines: list[str] = []
    result = train(classic, tmp_path / "run", TrainConfig(epochs=1), log=lines.append,
                   show_progress=False)
    card = read_card(result.model_path)
    assert card.training.started_from == "the base model"
    assert card.config["sequence"] == "conv" and read_card(with_base).config["sequence"] == "none"
    assert "context.weight" in load_model_file(result.model_path).tensors


@pytest.mark.slow
def test_from_scratch_and_a_base_that_does_not_fit_train_fresh(with_base, classic, tmp_path):
    lines: list[str] = []
    result = train(classic, tmp_path / "scratch", TrainConfig(epochs=1, from_scratch=True),
                   log=lines.append, show_progress=False)
    assert read_card(result.model_path).training.started_from == ""
    assert not any("base model" in line for line in lines)
    peak = json.loads((tmp_path / "scratch" / "summary.json").read_text())["schedule"]
    assert peak["peak_learning_rate"] == TrainConfig().learning_rate
    lines.clear()
    lstm = TrainConfig(epochs=1, model_options={"sequence": "lstm"})
    result = train(classic, tmp_path / "lstm", lstm, log=lines.append, show_progress=False)
    assert read_card(result.model_path).training.started_from == ""
    assert any(line.startswith("training from scratch: the base model does not fit")
               for line in lines)
    with pytest.raises(ModelFileError, match="differ"):  # asked for: an error, not a fallback
        train(classic, tmp_path / "asked", replace(lstm, init="base"), log=lambda _: None,
              show_progress=False)


def test_without_a_base_model_file_base_is_a_one_line_error(tmp_path, monkeypatch):
    missing = tmp_path / "none.safetensors"
    monkeypatch.setenv("CAPTCHALAB_BASE_MODEL", str(missing))
    with pytest.raises(ModelFileError, match="base model is missing") as error:
        Recognizer.load("base")
    assert "\n" not in str(error.value) and str(missing) in str(error.value)
    monkeypatch.delenv("CAPTCHALAB_BASE_MODEL")
    assert resolve_model("base") == PACKAGED_BASE_MODEL or not PACKAGED_BASE_MODEL.is_file()
    assert resolve_model("some/model.safetensors") == Path("some/model.safetensors")


@pytest.mark.slow
def test_predict_and_serve_read_with_base(with_base, classic, capsys):
    from fastapi.testclient import TestClient

    from captchalab.service.server import build_app

    image = sorted(classic.glob("*.png"))[0]
    assert main(["predict", "base", str(image), "--json"]) == 0
    reading = json.loads(capsys.readouterr().out.splitlines()[0])
    assert reading["text"] == reading["text"].lower()  # case-folded
    assert Recognizer.load("base").card.constraints.case == "lower"
    with TestClient(build_app(["base"])) as client:
        models = client.get("/v1/models").json()
    assert [m["name"] for m in models["models"]] == ["base"]


@pytest.mark.slow
def test_export_base_writes_an_onnx_file_that_reads_like_it(with_base, classic, tmp_path,
                                                            monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "base", "--check", str(classic), "--quiet"]) == 0
    assert "same reading 100.00%" in capsys.readouterr().out
    exported = Recognizer.load(tmp_path / "base.onnx")
    assert exported.card.constraints.case == "lower"  # read case-folded, as `predict base`


def test_few_labels_from_the_base_model_train_at_a_lower_rate():
    assert from_base_rate(25) == FROM_BASE_RATE
    assert FROM_BASE_RATE < from_base_rate(200) < from_base_rate(400) < 1.0
    assert from_base_rate(600) == from_base_rate(5000) == 1.0


def test_an_audit_says_which_attacker_it_modelled():
    assert "from scratch" in attacker(None, None)
    assert "base model" in attacker("base", None)
    assert "pretrains on synthetic classic" in attacker(None, "classic")


@pytest.mark.slow
def test_an_audit_from_the_base_model_starts_every_run_there(with_base, classic, tmp_path):
    from captchalab.experiments.audit import audit

    report = audit(classic, tmp_path / "audit", "10", TrainConfig(val_split=0.2),
                   max_minutes=0.2, seeds=1, log=lambda _: None, show_progress=False,
                   init="base")
    assert "base model" in report.setting["attacker"]
    assert "base model" in (tmp_path / "audit" / "audit.md").read_text()
    assert read_card(report.runs[0].model_path).training.started_from == "the base model"


@pytest.mark.slow
def test_questions_keep_their_lstm_and_train_from_scratch(with_base, tmp_path):
    """The base reads columns without an LSTM; a crnn for arithmetic questions needs one, so
    the run says the base does not fit rather than dropping the LSTM."""
    data = generate("arithmetic", 40, tmp_path / "questions", seed=2)
    lines: list[str] = []
    result = train(data, tmp_path / "run", TrainConfig(epochs=1), log=lines.append,
                   show_progress=False)
    card = read_card(result.model_path)
    assert card.config["sequence"] == "lstm" and card.training.started_from == ""
    assert any("the base model does not fit" in line for line in lines)
