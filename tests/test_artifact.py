import json

import numpy as np
import pytest
import torch

from captchalab.models import build
from captchalab.runtime import ModelFileError, Recognizer, load_model_file, save_model_file
from captchalab.runtime.artifact import METADATA_KEY
from captchalab.runtime.torch_backend import state_to_numpy


def _metadata(model) -> dict:
    return {"family": "crnn", "config": model.config, "alphabet": "abc",
            "preprocessing": {"height": 32, "width": 64, "mean": 0.5, "std": 0.5},
            "label_lengths": [3], "decoding": {"method": "greedy", "beam_width": 4,
                                               "length": 3}}


@pytest.fixture()
def small_model():
    torch.manual_seed(0)
    return build("crnn", num_classes=4, height=32, width=64, hidden=16, widths=(4, 8, 8, 8))


def test_round_trip_gives_identical_outputs(tmp_path, small_model):
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model),
                           _metadata(small_model))
    loaded = load_model_file(path)
    assert loaded.metadata["alphabet"] == "abc" and loaded.metadata["format_version"] == 1
    recognizer = Recognizer.load(path)
    images = np.random.default_rng(0).integers(0, 255, size=(3, 32, 64)).astype(np.uint8)
    batch = recognizer.preprocessing.normalize(images)
    with torch.inference_mode():
        expected = small_model.eval()(torch.from_numpy(batch)).numpy()
    assert np.allclose(recognizer.backend(batch), expected, atol=1e-6)
    single = recognizer.predict(images[0])
    assert single == recognizer.predict([images[0]])[0]
    assert len(single.char_confidences) == len(single.text)


def test_the_file_holds_no_pickle(tmp_path, small_model):
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model),
                           _metadata(small_model))
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_size])
    assert json.loads(header["__metadata__"][METADATA_KEY])["family"] == "crnn"
    assert b"\x80\x04" not in path.read_bytes()[: 8 + header_size]


def test_other_format_version_is_refused(tmp_path, small_model):
    path = tmp_path / "m.safetensors"
    save_model_file(path, state_to_numpy(small_model), _metadata(small_model) | {})
    from safetensors.numpy import load, save

    tensors = load(path.read_bytes())
    meta = json.loads(json.loads(path.read_bytes()[8 : 8 + int.from_bytes(
        path.read_bytes()[:8], "little")])["__metadata__"][METADATA_KEY])
    meta["format_version"] = 99
    path.write_bytes(save(tensors, metadata={METADATA_KEY: json.dumps(meta)}))
    with pytest.raises(ModelFileError, match="format version 99"):
        Recognizer.load(path)


def test_mismatched_shapes_are_refused(tmp_path, small_model):
    meta = _metadata(small_model)
    meta["config"] = dict(small_model.config, num_classes=9)
    path = save_model_file(tmp_path / "m.safetensors", state_to_numpy(small_model), meta)
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
                           _metadata(small_model)).read_bytes()
    path = tmp_path / "m.safetensors"
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "pickle":
        path.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    elif damage == "no metadata":
        from safetensors.numpy import save_file

        save_file(state_to_numpy(small_model), str(path))
    elif damage == "metadata without alphabet":
        meta = {k: v for k, v in _metadata(small_model).items() if k != "alphabet"}
        save_model_file(path, state_to_numpy(small_model), meta)
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
