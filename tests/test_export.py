"""ONNX export: self-contained files, the same readings as PyTorch, and a runtime that works
without torch installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from captchalab.cli import main
from captchalab.export import check_parity, export_onnx
from captchalab.models import list_families
from captchalab.runtime import ModelFileError, Recognizer
from captchalab.runtime.model_file import load_model_file


def _without(*packages: str) -> str:
    """Script prologue that makes ``packages`` unimportable, as if they were not installed."""
    return textwrap.dedent(f"""
        import json, sys

        class NotInstalled:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {packages!r}:
                    raise ImportError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, NotInstalled())
    """)


WITHOUT_TORCH = _without("torch", "onnx", "fastapi", "starlette", "uvicorn")  # core only


@pytest.fixture(scope="module")
def crnn_onnx(trained_model, tmp_path_factory) -> Path:
    return export_onnx(trained_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def _model(name, trained_model, family_model) -> Path:
    return trained_model if name == "crnn" else family_model(name)


@pytest.mark.parametrize("name", list_families())
def test_every_family_exports_with_parity(name, trained_model, family_model, rings_test,
                                          tmp_path):
    source = _model(name, trained_model, family_model)
    out = export_onnx(source, tmp_path / "m.onnx")
    report = check_parity(Recognizer.load(source), Recognizer.load(out), rings_test)
    assert report.images == 150
    assert report.passed(), report
    assert report.reference_accuracy == report.exported_accuracy


def test_onnx_file_carries_the_metadata_and_a_dynamic_batch(crnn_onnx, trained_model, rings_test):
    model = onnx.load(str(crnn_onnx))
    metadata = json.loads({p.key: p.value for p in model.metadata_props}["captchalab"])
    source = json.loads(Recognizer.load(trained_model).card.to_json())
    for key in ("alphabet", "preprocessing", "family", "decoding", "config", "training"):
        assert metadata[key] == source[key]
    assert metadata["export"]["source"] == trained_model.name
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    recognizer = Recognizer.load(crnn_onnx)
    images = sorted(rings_test.glob("*.png"))[:5]
    one = [recognizer.predict(image) for image in images]
    assert recognizer.predict(images) == one  # batch of 5 reads like five batches of 1


def test_cli_export_check_reports_parity(trained_model, rings_test, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(trained_model), "--out", str(out), "--check", str(rings_test),
                 "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["same_reading"] == 1.0
    assert report["max_confidence_diff"] <= 1e-4
    assert main(["export", str(trained_model), "--out", str(out)]) == 1  # exists: kept
    assert "--overwrite" in capsys.readouterr().err


def test_int8_export_is_smaller_and_reads_the_same(trained_model, rings_test, tmp_path):
    out = export_onnx(trained_model, tmp_path / "int8.onnx", int8=True)
    report = check_parity(Recognizer.load(trained_model), Recognizer.load(out), rings_test)
    assert report.same_reading >= 0.98
    assert Recognizer.load(out).card.export.int8 is True
    # the linear and recurrent weights (MatMul/Gemm/LSTM) go from 4 bytes to 1; convolutions stay
    tensors = load_model_file(trained_model).tensors
    dense = sum(v.nbytes for k, v in tensors.items()
                if k.startswith(("project.", "classifier.", "rnn.")) and v.ndim == 2)
    saved = export_onnx(trained_model, tmp_path / "f.onnx").stat().st_size - out.stat().st_size
    assert saved >= 0.6 * dense > 0


def test_onnx_without_captchalab_metadata_is_refused(crnn_onnx, tmp_path):
    model = onnx.load(str(crnn_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ModelFileError, match=r"bare\.onnx: ONNX file without captchalab metadata"):
        Recognizer.load(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"junk\.onnx: not a usable ONNX model"):
        Recognizer.load(junk)


def test_runtime_and_cli_predict_work_without_torch(crnn_onnx, rings_test, tmp_path):
    """Import and predict with torch (and the service packages) made unimportable: the
    runtime needs numpy, Pillow and onnxruntime only."""
    image = sorted(rings_test.glob("*.png"))[0]
    script = WITHOUT_TORCH + textwrap.dedent(f"""
        from captchalab import Recognizer
        from captchalab.cli import main

        prediction = Recognizer.load({str(crnn_onnx)!r}).predict({str(image)!r})
        code = main(["predict", {str(crnn_onnx)!r}, {str(image)!r}, "--json"])
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print(json.dumps({{"text": prediction.text, "code": code, "torch": loaded}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary, cli_line = json.loads(lines[-1]), json.loads(lines[0])
    assert summary["code"] == 0 and summary["torch"] == []
    assert cli_line["text"] == summary["text"] == Recognizer.load(crnn_onnx).predict(image).text
    assert np.isfinite(cli_line["confidence"])


def test_safetensors_without_torch_says_how_to_proceed(trained_model):
    script = WITHOUT_TORCH + textwrap.dedent(f"""
        from captchalab.cli import main
        sys.exit(main(["predict", {str(trained_model)!r}, "x.png"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "needs PyTorch" in result.stderr and "captchalab export" in result.stderr
    assert "Traceback" not in result.stderr
    serve = subprocess.run([sys.executable, "-c", WITHOUT_TORCH + "from captchalab.cli import "
                            f"main\nsys.exit(main(['serve', {str(trained_model)!r}]))"],
                           capture_output=True, text=True, timeout=120)
    assert serve.returncode == 1 and "pip install 'captchalab[serve]'" in serve.stderr
    no_httptools = subprocess.run([sys.executable, "-c", _without("httptools") + "from "
                                   "captchalab.cli import main\nsys.exit(main(['serve', "
                                   f"{str(trained_model)!r}]))"],
                                  capture_output=True, text=True, timeout=120)
    assert no_httptools.returncode == 1 and "httptools is not installed" in no_httptools.stderr
    assert "Traceback" not in no_httptools.stderr
