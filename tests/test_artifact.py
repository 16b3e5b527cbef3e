"""The model file: safetensors weights and the typed model card, read and written in one
place; version 1 files still load; damaged files get one-line errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.numpy import load, save

from captchalab.data import Preprocessing
from captchalab.models import build
from captchalab.runtime import (
    ModelCard,
    ModelFileError,
    Recognizer,
    load_model_file,
    read_card,
    save_model_file,
)
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.model_file import FORMAT_VERSION, METADATA_KEY, DataFacts, TrainingFacts
from captchalab.runtime.torch_backend import state_to_numpy


def _card(model) -> ModelCard:
    return ModelCard(family="crnn", config=model.config, decoder="ctc", alphabet="abc",
                     preprocessing=Preprocessing(32, 64, 0.5, 0.5), label_lengths=(3,),
                     decoding=DecodingSettings("greedy", 4, 3),
                     data=DataFacts(folder="abc", case_insensitive=True),
                     training=TrainingFacts(best_epoch=7, epochs_run=9, steps_run=90,
                                            steps_planned=100))


def _raw(path) -> tuple[dict, dict]:
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return load(data), json.loads(header["__metadata__"][METADATA_KEY])


@pytest.fixture()
def small_model():
    torch.manual_seed(0)
    return build("crnn", num_classes=4, height=32, width=64, hidden=16, widths=(4, 8, 8, 8))


def test_round_trip_gives_the_same_card_and_outputs(tmp_path, small_model):
    card = _card(small_model)
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model), card)
    loaded = load_model_file(path)
    assert loaded.card == card == read_card(path)
    assert _raw(path)[1]["format_version"] == FORMAT_VERSION == 2
    assert loaded.card.training.schedule_share == 0.9
    recognizer = Recognizer.load(path)
    images = np.random.default_rng(0).integers(0, 255, size=(3, 32, 64)).astype(np.uint8)
    batch = recognizer.preprocessing.normalize(images)
    with torch.inference_mode():
        expected = small_model.eval()(torch.from_numpy(batch)).numpy()
    assert np.allclose(recognizer.backend(batch), expected, atol=1e-6)
    single = recognizer.predict(images[0])
    assert single == recognizer.predict([images[0]])[0]
    assert len(single.char_confidences) == len(single.text)


def test_a_version_1_file_still_loads(tmp_path, small_model):
    """Version 1 kept the card as a plain dict, its best epoch as training.epochs."""
    version_1 = {"format": "captchalab-model", "format_version": 1, "family": "crnn",
                 "config": small_model.config, "decoder": "ctc", "alphabet": "abc",
                 "preprocessing": {"height": 32, "width": 64, "mean": 0.4, "std": 0.3},
                 "label_lengths": [3], "decoding": {"method": "beam", "beam_width": 8,
                                                    "length": 3, "threshold": 0.5},
                 "metrics": {"sequence_accuracy": 0.5}, "data": {"folder": "abc",
                                                                 "fingerprint": "f00"},
                 "training": {"epochs": 12, "minutes": 1.5, "config": {"seed": 0}},
                 "created": "2026-11-20T00:00:00+00:00"}
    path = tmp_path / "v1.safetensors"
    path.write_bytes(save(state_to_numpy(small_model),
                          metadata={METADATA_KEY: json.dumps(version_1)}))
    card = read_card(path)
    assert card.training.best_epoch == 12 and card.training.minutes == 1.5
    assert card.preprocessing == Preprocessing(32, 64, 0.4, 0.3)
    assert card.decoding == DecodingSettings("beam", 8, 3, 0.5)
    assert card.data.fingerprint == "f00" and card.metrics == {"sequence_accuracy": 0.5}
    assert Recognizer.load(path).predict(np.zeros((32, 64), np.uint8)).confidence >= 0


def test_the_file_holds_no_pickle(tmp_path, small_model):
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model),
                           _card(small_model))
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    assert _raw(path)[1]["family"] == "crnn"
    assert b"\x80\x04" not in path.read_bytes()[: 8 + header_size]


def test_other_format_version_is_refused(tmp_path, small_model):
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model),
                           _card(small_model))
    tensors, meta = _raw(path)
    meta["format_version"] = 99
    path.write_bytes(save(tensors, metadata={METADATA_KEY: json.dumps(meta)}))
    with pytest.raises(ModelFileError, match="format version 99"):
        Recognizer.load(path)


def test_mismatched_shapes_are_refused(tmp_path, small_model):
    card = replace(_card(small_model), config=dict(small_model.config, num_classes=9))
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model), card)
    with pytest.raises(ModelFileError, match="has shape"):
        Recognizer.load(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"definitely not safetensors")
    with pytest.raises(ModelFileError, match="junk.safetensors"):
        Recognizer.load(path)
    with pytest.raises(ModelFileError, match="no such model file"):
        Recognizer.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("damage", ["truncated", "pickle", "no metadata", "metadata without "
                                    "alphabet", "empty"])
def test_damaged_model_files_get_one_line_errors(tmp_path, small_model, damage, capsys):
    """Never unpickled, never a traceback: each damaged file is named with its problem."""
    import pickle

    from captchalab.cli import main

    good = save_model_file(tmp_path / "good.safetensors", state_to_numpy(small_model),
                           _card(small_model))
    path = tmp_path / "m.safetensors"
    if damage == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "pickle":
        path.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    elif damage == "no metadata":
        from safetensors.numpy import save_file

        save_file(state_to_numpy(small_model), str(path))
    elif damage == "metadata without alphabet":
        tensors, meta = _raw(good)
        del meta["alphabet"]
        path.write_bytes(save(tensors, metadata={METADATA_KEY: json.dumps(meta)}))
    else:
        path.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"m\.safetensors: "):
        Recognizer.load(path)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (64, 32), 255).save(image)
    assert main(["predict", str(path), str(image)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m.safetensors" in err and "Traceback" not in err
