"""The runtime install (``pip install captchalab``, no extras) in a virtual environment of
its own, without PyTorch: every command that can run without torch does, and the others say
in one line which extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), str(ROOT)],
        capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def _captchalab(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "captchalab"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_runtime_install_has_no_torch(runtime_venv):
    probe = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", "import torch"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr


def test_torch_free_commands_run(runtime_venv, onnx_model, rings_test, tmp_path):
    image = sorted(rings_test.glob("*.png"))[0]
    runs = [
        ("--help",),
        ("train", "--help"),
        ("predict", onnx_model, image),
        ("evaluate", onnx_model, rings_test),
        ("analyze", "errors", onnx_model, rings_test, "--out", tmp_path / "errors"),
        ("generate", "rings", "--count", "3", "--out", tmp_path / "generated", "--quiet"),
        ("annotate-centres", onnx_model, rings_test, "--out", tmp_path / "centres.jsonl",
         "--quiet"),
    ]
    for args in runs:
        result = _captchalab(runtime_venv, *args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, args
    assert (tmp_path / "errors" / "errors.json").is_file()
    assert len(list((tmp_path / "generated").glob("*.png"))) == 3
    assert (tmp_path / "centres.jsonl").stat().st_size > 0


def test_commands_that_need_an_extra_say_which_in_one_line(runtime_venv, trained_model,
                                                           onnx_model, rings_test, tmp_path):
    image = sorted(rings_test.glob("*.png"))[0]
    needs_train = [
        ("train", rings_test, "--out", tmp_path / "run"),
        ("compare", rings_test, "--out", tmp_path / "compare"),
        ("audit", rings_test, "--out", tmp_path / "audit"),
        ("export", trained_model, "--out", tmp_path / "m.onnx"),
        ("analyze", "receptive-field", trained_model, "--out", tmp_path),
        ("analyze", "saliency", trained_model, image, "--out", tmp_path),
        ("predict", trained_model, image),
    ]
    for args in needs_train:
        result = _captchalab(runtime_venv, *args, cwd=tmp_path)
        err = result.stderr.strip()
        assert result.returncode == 1, (args, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert "pip install 'captchalab[train]'" in err, (args, err)
    serve = _captchalab(runtime_venv, "serve", onnx_model, cwd=tmp_path)
    assert serve.returncode == 1 and "pip install 'captchalab[serve]'" in serve.stderr
    assert len(serve.stderr.strip().splitlines()) == 1
