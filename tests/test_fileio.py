"""Files are written whole (atomically) and with the mode a plain write would give them
(0666 less the umask), so another user or a web server can read models and labels."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from captchalab.data import Preprocessing
from captchalab.export import export_onnx
from captchalab.fileio import atomic_write_bytes
from captchalab.generators import generate
from captchalab.models import build
from captchalab.runtime import ModelCard, save_model_file
from captchalab.runtime.torch_backend import state_to_numpy
from captchalab.service.labelling import save_without_overwrite


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path, umask_022):
    assert mode(atomic_write_bytes(tmp_path / "a.txt", b"a")) == 0o644
    os.umask(0o077)
    assert mode(atomic_write_bytes(tmp_path / "b.txt", b"b")) == 0o600
    os.umask(0o002)
    assert mode(atomic_write_bytes(tmp_path / "a.txt", b"again")) == 0o664  # replaced too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_models_onnx_files_labels_and_generated_images_are_readable(tmp_path, umask_022):
    torch.manual_seed(0)
    model = build("crnn", num_classes=4, height=32, width=64, hidden=8, widths=(4, 8, 8, 8))
    card = ModelCard(family="crnn", config=model.config, decoder="ctc", alphabet="abc",
                     preprocessing=Preprocessing(32, 64))
    weights = save_model_file(tmp_path / "model.safetensors", state_to_numpy(model), card)
    written = [weights, export_onnx(weights, tmp_path / "model.onnx"),
               save_without_overwrite(b"png bytes", tmp_path / "labelled", "ab12", ".png")]
    written += sorted(generate("rings", 3, tmp_path / "rings", seed=1, workers=1).iterdir())
    for path in written:
        assert mode(path) == 0o644, path
