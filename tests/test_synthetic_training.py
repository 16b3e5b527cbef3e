"""Training on synthetic captchas drawn on the fly, and pretraining with its cache."""

import numpy as np
import pytest

from captchalab.data import Alphabet, Preprocessing
from captchalab.generators import SchemeError, load_scheme, render
from captchalab.runtime.model_file import load_model_file
from captchalab.training import TrainConfig, train
from captchalab.training.pretrain import pretrain
from captchalab.training.synthetic import SyntheticStream, fit_scheme


def test_each_epoch_draws_fresh_images_the_same_in_background_or_not():
    scheme = load_scheme("classic")
    preprocessing = Preprocessing(32, 96)
    inline = SyntheticStream(scheme, preprocessing, 8, seed=1, background=False)
    background = SyntheticStream(scheme, preprocessing, 8, seed=1)
    shared = SyntheticStream(scheme, preprocessing, 8, seed=1, workers=3)  # even the first
    try:
        first, second = background.epoch(0), background.epoch(1)
        assert np.array_equal(first.pixels, inline.epoch(0).pixels)
        assert first.pixels.shape == (8, 32, 96)
        assert not np.array_equal(first.pixels, second.pixels)
        assert np.array_equal(shared.epoch(0).pixels, first.pixels)
        assert shared.epoch(1).labels == second.labels
    finally:
        background.close()
        shared.close()


def test_scheme_is_fitted_to_the_datas_symbols_and_lengths():
    fitted = fit_scheme(load_scheme("strike"), Alphabet("abc12"), [4, 5])
    assert fitted.alphabet == "abc12" and tuple(fitted.length) == (4, 5)
    item = render(fitted, seed=0, index=3)
    assert set(item.label) <= set("abc12") and 4 <= len(item.label) <= 5
    with pytest.raises(SchemeError, match="draws labels of 6 characters"):
        fit_scheme(load_scheme("rings"), None, [5])


@pytest.mark.slow
def test_training_on_a_stream_learns(tmp_path):
    config = TrainConfig(scheme="rings", epochs=12, stream_epoch=768, stream_val=128)
    result = train(None, tmp_path / "run", config, log=lambda _: None, show_progress=False)
    card = load_model_file(result.model_path).card
    assert card.data.scheme == "rings" and card.alphabet == "234568"
    assert result.metrics["char_accuracy"] > 0.5  # chance is 1/6


@pytest.mark.slow
def test_pretraining_is_cached_and_fine_tuning_starts_from_it(monkeypatch, tmp_path):
    from captchalab.generators import generate

    monkeypatch.setenv("CAPTCHALAB_CACHE", str(tmp_path / "cache"))
    data = generate("rings", 40, tmp_path / "data", seed=2)
    config = TrainConfig(stream_epoch=64, stream_val=32, pretrain_steps=4)
    messages: list[str] = []
    path = pretrain(data, "rings", config, log=messages.append, show_progress=False)
    assert path.is_file() and path.is_relative_to(tmp_path / "cache")
    assert any(m.startswith("pretraining on rings") for m in messages)
    messages.clear()
    assert pretrain(data, "rings", config, log=messages.append, show_progress=False) == path
    assert any("using the pretrained model cached" in m for m in messages)
    tuned = train(data, tmp_path / "tuned", TrainConfig(epochs=1, init=str(path)),
                  log=messages.append, show_progress=False)
    assert any("6 symbols carried over" in m for m in messages)
    assert load_model_file(tuned.model_path).card.preprocessing == \
        load_model_file(path).card.preprocessing
    messages.clear()  # the same through train(): pretraining is part of the recipe
    again = train(data, tmp_path / "again", TrainConfig(epochs=1, pretrain="rings",
                                                         stream_epoch=64, stream_val=32,
                                                         pretrain_steps=4),
                  log=messages.append, show_progress=False)
    assert any("using the pretrained model cached" in m for m in messages)
    assert again.model_path.is_file()
