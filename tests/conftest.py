"""Shared fixtures: small generated datasets and briefly trained models (each trained once).

Tests that train a model, start a server or drive a browser are marked ``slow``; the rest
(``make test-fast``: units and the registry's contract tests) run in a minute or two.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from captchalab.data.centres import annotate_centres
from captchalab.generators import generate
from captchalab.runtime import Recognizer

# fixtures that train a model: every test using one is slow (``make test-fast`` skips it)
TRAINED_FIXTURES = {"trained_model", "onnx_model", "family_model", "derived_centres"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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


class Plan(NamedTuple):
    """How a family learns 540 rings captchas in the tests: its epochs, the bar its character
    (or label) accuracy must clear (chance is 1/6), and a smaller network or input where the
    family clears its bar with one in less time (``None``: the height from the data)."""

    epochs: int
    bar: float
    width: float = 1.0
    height: int | None = None


# A family registered without a plan here is trained and tested with DEFAULT_PLAN, so a new
# family is tested the day it registers. The comments give the accuracy each plan reached.
DEFAULT_PLAN = Plan(30, 0.6)
PLANS = {
    "crnn": Plan(14, 0.8),  # the trained_model fixture
    "multihead": Plan(40, 0.5, height=32),  # 0.75 (0.40 at width 0.5), 0.8x the time of 40
    "multihead-spatial": Plan(30, 0.6, height=32),  # 0.76 (0.69 at width 0.5), 0.7x
    "slice": Plan(12, 0.8, width=0.5),  # 0.97, 0.4x the time at width 1
    "heatmap": Plan(15, 0.8, width=0.5),  # 0.99, 0.3x
    "multilabel": Plan(40, 0.72, width=0.5),  # per-label, 0.96 ('every symbol present': 0.66)
}


def plan(name: str) -> Plan:
    return PLANS.get(name, DEFAULT_PLAN)


@pytest.fixture(scope="session")
def derived_centres(trained_model, rings_train, tmp_path_factory) -> Path:
    """Centres of rings_train derived from the crnn's CTC alignment (not the generator's)."""
    out = tmp_path_factory.mktemp("centres") / "centres.jsonl"
    return annotate_centres(Recognizer.load(trained_model), rings_train, out).path


@pytest.fixture(scope="session")
def family_model(rings_train, trained_model, tmp_path_factory, request):
    """Train a family once per session (the crnn is ``trained_model``); its model path."""
    from captchalab.models import family_class

    trained: dict[str, Path] = {"crnn": trained_model}

    def get(name: str) -> Path:
        if name not in trained:
            from captchalab.training import TrainConfig, train

            options = {"slices": RINGS_SLICES} if name == "slice" else {}
            if family_class(name).needs_centres:
                options["centres"] = str(request.getfixturevalue("derived_centres"))
            config = TrainConfig(model=name, epochs=plan(name).epochs, seed=0,
                                 width_multiplier=plan(name).width, height=plan(name).height,
                                 model_options=options)
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
def running_app(app) -> Iterator[str]:
    """The app served by uvicorn in a thread, on a free port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="e2e-uvicorn")
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail("the captchalab server did not answer /healthz within 30 s")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
