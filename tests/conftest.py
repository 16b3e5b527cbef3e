"""Shared fixtures: small generated datasets and a briefly trained model (trained once)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from captchalab.generators import generate
from captchalab.runtime import Recognizer
from captchalab.runtime.centres import annotate_centres


@pytest.fixture(scope="session")
def rings_train(tmp_path_factory) -> Path:
    return generate("rings", 600, tmp_path_factory.mktemp("rings_train"), seed=11)


@pytest.fixture(scope="session")
def rings_test(tmp_path_factory) -> Path:
    return generate("rings", 150, tmp_path_factory.mktemp("rings_test"), seed=12)


@pytest.fixture(scope="session")
def trained_model(rings_train, tmp_path_factory) -> Path:
    """A CRNN trained for about a minute on 600 rings captchas."""
    from captchalab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    result = train(rings_train, out, TrainConfig(epochs=14, seed=0, val_split=0.1),
                   log=lambda _: None, show_progress=False)
    return result.model_path


@pytest.fixture(scope="session")
def onnx_model(trained_model, tmp_path_factory) -> Path:
    """The trained model exported to ONNX."""
    from captchalab.export import export_onnx

    return export_onnx(trained_model, tmp_path_factory.mktemp("onnx") / "rings.onnx")


RINGS_SLICES = [54, 110, 170, 215, 262]  # seed 003's boundaries, in pixels of 310
# epochs to learn 540 rings captchas well above chance; the bar is per character (chance 1/6)
PLANS = {
    "multihead": (40, 0.5),
    "multihead-spatial": (30, 0.6),
    "slice": (12, 0.8),
    "multilabel": (40, 0.72),  # per-label accuracy; 'every symbol present' scores about 0.66
}


@pytest.fixture(scope="session")
def derived_centres(trained_model, rings_train, tmp_path_factory) -> Path:
    """Centres of rings_train derived from the crnn's CTC alignment (not the generator's)."""
    out = tmp_path_factory.mktemp("centres") / "centres.jsonl"
    return annotate_centres(Recognizer.load(trained_model), rings_train, out).path


@pytest.fixture(scope="session")
def family_model(rings_train, derived_centres, tmp_path_factory):
    """Train a family once per session; returns its model path."""
    trained: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in trained:
            epochs = 15 if name == "heatmap" else PLANS[name][0]
            options = {"slices": RINGS_SLICES} if name == "slice" else {}
            from captchalab.training import TrainConfig, train

            config = TrainConfig(model=name, epochs=epochs, seed=0, model_options=options,
                                 centres=str(derived_centres) if name == "heatmap" else None)
            result = train(rings_train, tmp_path_factory.mktemp(name), config,
                           log=lambda _: None, show_progress=False)
            trained[name] = result.model_path
        return trained[name]

    return get


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(*args: str, timeout: float = 60.0) -> Iterator[str]:
    """Run ``captchalab serve ARGS`` on a free port; yields its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "captchalab.cli", "serve", *args,
                                "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz").read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
