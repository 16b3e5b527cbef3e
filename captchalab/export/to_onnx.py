"""``export``: a ``.safetensors`` model file -> an ``.onnx`` file that predicts on its own.

The ONNX graph takes the normalised ``(N, 1, H, W)`` batch (dynamic N) and gives the family's
raw outputs; the model file's JSON metadata (alphabet, preprocessing, family, decoding) rides
along in the ONNX metadata, so onnxruntime plus captchalab's torch-free runtime is all a
device needs.

int8 modes (measure before choosing; see BENCHMARKS.md):
- ``dynamic``: weights of MatMul/Gemm/LSTM stored as int8, activations quantised on the fly.
  Convolutions stay float: dynamically quantised convolutions are often slower on CPU.
- ``static``: convolutions quantised too (QDQ, per-channel weights), activation ranges
  calibrated on real images.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from captchalab.data.preprocess import ImageInput, Preprocessing
from captchalab.fileio import atomic_write_bytes
from captchalab.runtime.artifact import METADATA_KEY, load_model_file

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "outputs"
INT8_MODES = ("dynamic", "static")
CALIBRATION_IMAGES = 256


def _torch_to_onnx(model, preprocessing: Preprocessing) -> bytes:
    import torch

    example = torch.zeros(2, 1, preprocessing.height, preprocessing.width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on LSTM batch sizes and such
        torch.onnx.export(model, (example,), buffer, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buffer.getvalue()


def _quantize(model_bytes: bytes, mode: str, calibration: np.ndarray | None) -> bytes:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self, images: np.ndarray, size: int = 32) -> None:
            self.batches = iter([{INPUT_NAME: images[i : i + size]}
                                 for i in range(0, len(images), size)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="captchalab-int8-") as folder:
        source, prepared, target = (Path(folder) / name for name in ("a.onnx", "b.onnx",
                                                                        "c.onnx"))
        source.write_bytes(model_bytes)
        quant_pre_process(str(source), str(prepared))
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm", "LSTM"])
        else:
            if calibration is None or not len(calibration):
                raise ValueError("--int8 static needs calibration images (--calibrate DATA)")
            quantize_static(str(prepared), str(target), Batches(calibration),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True)
        return target.read_bytes()


def export_onnx(model_path: str | Path, out: str | Path, int8: str | None = None,
                calibration: Sequence[ImageInput] = ()) -> Path:
    """Write ``out`` (atomically): the model at ``model_path`` as a self-contained ONNX file.

    ``int8`` is None (float32), 'dynamic' or 'static'; 'static' calibrates its activation
    ranges on ``calibration`` images (paths, bytes, arrays), read with the model's own
    preprocessing.
    """
    import onnx

    from captchalab.runtime.torch_backend import build_model

    if int8 not in (None, *INT8_MODES):
        raise ValueError(f"unknown int8 mode {int8!r}; use one of {', '.join(INT8_MODES)}")
    model_path = Path(model_path)
    model_file = load_model_file(model_path)
    preprocessing = Preprocessing.from_dict(model_file.metadata["preprocessing"])
    graph = _torch_to_onnx(build_model(model_file, str(model_path)), preprocessing)
    if int8:
        images = list(calibration)[:CALIBRATION_IMAGES]
        pixels = preprocessing(images) if images else None
        graph = _quantize(graph, int8, pixels)
    model = onnx.load_from_string(graph)
    metadata = dict(model_file.metadata)
    metadata["export"] = {
        "source": model_path.name,
        "source_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "opset": ONNX_OPSET,
        "int8": int8,
    }
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    model.producer_name = "captchalab"
    onnx.checker.check_model(model)
    return atomic_write_bytes(out, model.SerializeToString())
