"""Shared fixtures: small generated datasets and a briefly trained model (trained once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from captchalab.generators import generate


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
