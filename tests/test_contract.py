"""The registry's contract: every registered family builds from the data's shape, runs
forward and backward, decodes, and round-trips through its model file and through ONNX,
on random weights, in seconds. A new family is tested here the day it registers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captchalab.data import Alphabet, Preprocessing
from captchalab.export import export_onnx
from captchalab.models import DataShape, Targets, build, family_class, list_families
from captchalab.runtime import ModelCard, Recognizer, load_model_file, save_model_file
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import get_decoder
from captchalab.runtime.torch_backend import state_to_numpy

ALPHABET = Alphabet("abcdef")
HEIGHT, WIDTH, LENGTH, BATCH = 32, 96, 4, 3


# every family with its defaults, and the crnn's other ways of reading across the columns
NETWORKS = [(name, {}) for name in list_families()] + [
    ("crnn", {"sequence": sequence}) for sequence in ("conv", "lstm")]


def _model(name: str, **options):
    torch.manual_seed(0)
    shape = DataShape(ALPHABET.num_classes, HEIGHT, WIDTH, (LENGTH,), 2.0 * WIDTH)
    model = build(name, **family_class(name).configure(shape, **options))
    if options.get("sequence") == "conv":  # its context starts at zero: as if trained
        torch.nn.init.normal_(model.context.weight, std=0.05)
    return model


def _targets() -> Targets:
    labels = torch.randint(1, ALPHABET.num_classes, (BATCH, LENGTH))
    xs = (torch.arange(LENGTH, dtype=torch.float32) + 0.5) * WIDTH / LENGTH
    centres = torch.stack([xs, torch.full((LENGTH,), HEIGHT / 2)], dim=1).repeat(BATCH, 1, 1)
    return Targets(labels, torch.full((BATCH,), LENGTH), centres)


def test_the_registry_lists_every_family_with_a_summary():
    names = list_families()
    assert names[0] == "crnn" and len(names) == len(set(names)) >= 6
    for name in names:
        assert family_class(name).summary, f"{name} has no summary for the help texts"
    with pytest.raises(ValueError, match="known: crnn, "):
        family_class("no-such-family")


@pytest.mark.parametrize("name, options", NETWORKS)
def test_forward_backward_and_decode(name, options):
    model = _model(name, **options)
    outputs = model(torch.randn(BATCH, 1, HEIGHT, WIDTH))
    loss = model.loss(outputs, _targets())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and any(float(g.abs().sum()) > 0 for g in gradients)
    decoder = get_decoder(model.decoder)
    decoded = decoder(outputs.detach().numpy(), DecodingSettings(length=LENGTH))
    assert len(decoded) == BATCH
    for reading in decoded:
        assert all(1 <= label < ALPHABET.num_classes for label in reading.labels)
        assert 0.0 <= reading.confidence <= 1.0
        assert len(reading.char_confidences) == len(reading.labels)


@pytest.mark.parametrize("name, options", NETWORKS)
def test_model_file_and_onnx_round_trip(name, options, tmp_path):
    model = _model(name, **options).eval()
    card = ModelCard(family=name, config=model.config, decoder=model.decoder,
                     alphabet=ALPHABET.symbols, preprocessing=Preprocessing(HEIGHT, WIDTH),
                     label_lengths=(LENGTH,), decoding=DecodingSettings(length=LENGTH))
    path = save_model_file(tmp_path / "model.safetensors", state_to_numpy(model), card)
    assert load_model_file(path).card == card
    pixels = np.random.default_rng(0).integers(0, 256, (BATCH, HEIGHT, WIDTH), dtype=np.uint8)
    with torch.inference_mode():
        expected = model(torch.from_numpy(card.preprocessing.normalize(pixels))).numpy()
    source = Recognizer.load(path)
    assert np.allclose(source.outputs(pixels), expected, atol=1e-6)
    exported = Recognizer.load(export_onnx(path, tmp_path / "model.onnx"))
    assert exported.card.export is not None and exported.card.family == name
    assert np.allclose(exported.outputs(pixels), expected, atol=1e-4)
    for a, b in zip(source.read(pixels), exported.read(pixels)):
        assert a.characters == b.characters
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
