"""``export``: a ``.safetensors`` model file -> an ``.onnx`` file that predicts on its own.

The ONNX graph takes the normalised ``(N, 1, H, W)`` batch (dynamic N) and gives the family's
raw outputs; the model file's JSON metadata (alphabet, preprocessing, family, decoding) rides
along in the ONNX metadata, so onnxruntime plus captchalab's torch-free runtime is all a
device needs.

int8 (``--int8``): the weights of MatMul/Gemm/LSTM are stored as int8 and their activations
quantised on the fly; convolutions stay float32. Measured on a 2-core AVX2 CPU (BENCHMARKS.md):
the file shrinks by about a third with the same readings; speed stays within run-to-run noise
of float32. Static QDQ convolutions were not reliably faster either, moved confidences by up
to 0.24 and broke a briefly trained model, so they are not offered.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

from captchalab.data.preprocess import Preprocessing
from captchalab.fileio import atomic_write_bytes
from captchalab.runtime.constraints import Constraints, symbol_groups
from captchalab.runtime.model_file import (
    METADATA_KEY,
    ExportFacts,
    load_model_file,
    resolve_model,
)

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "outputs"


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


def _quantize(model_bytes: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="captchalab-int8-") as folder:
        source, prepared, target = (Path(folder) / name for name in ("a.onnx", "b.onnx",
                                                                        "c.onnx"))
        source.write_bytes(model_bytes)
        quant_pre_process(str(source), str(prepared))
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "LSTM"])
        return target.read_bytes()


def export_onnx(model_path: str | Path, out: str | Path, int8: bool = False,
                constraints: Constraints | None = None) -> Path:
    """Write ``out`` (atomically): the model at ``model_path`` as a self-contained ONNX file,
    float32 or with ``int8`` weights for its MatMul/Gemm/LSTM layers. ``constraints`` become
    the file's default constrained reading (over the source's own defaults)."""
    import onnx

    from captchalab.runtime.torch_backend import build_model

    model_path = resolve_model(model_path)  # a file, or `base`
    model_file = load_model_file(model_path)
    card = model_file.card
    if constraints is not None:
        card = replace(card, constraints=constraints.merged_with(card.constraints))
        symbol_groups(card.symbols, card.constraints)  # the model can read what is allowed
    graph = _torch_to_onnx(build_model(model_file, str(model_path)),
                           model_file.card.preprocessing)
    if int8:
        graph = _quantize(graph)
    model = onnx.load_from_string(graph)
    card = card.with_export(ExportFacts(
        model_path.name, hashlib.sha256(model_path.read_bytes()).hexdigest(), ONNX_OPSET,
        bool(int8)))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card.to_json()
    model.producer_name = "captchalab"
    onnx.checker.check_model(model)
    return atomic_write_bytes(out, model.SerializeToString())
