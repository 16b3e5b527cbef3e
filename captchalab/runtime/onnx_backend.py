"""Run an exported ``.onnx`` model with onnxruntime: numpy in, numpy out, no torch.

The ONNX file carries the same JSON metadata as the ``.safetensors`` model file (alphabet,
preprocessing, family, decoding) under the ``captchalab`` metadata key, so the file alone is
enough to predict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from captchalab.runtime.model_file import METADATA_KEY, ModelCard, ModelFileError


def session_options(threads: int | None = None):
    """onnxruntime session options: every graph optimisation, ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device``: CUDA first when asked for (or 'auto') and present."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise ValueError("`device` cuda was asked for but onnxruntime has no CUDA provider")
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxBackend:
    """Forward pass of an exported model: normalised ``(N, 1, H, W)`` batch in, outputs out."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads),
                                                providers=providers_for(device))
        except Exception as error:  # onnxruntime raises its own exception types
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise ModelFileError(f"{path}: not a usable ONNX model ({reason})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ModelFileError(f"{path}: ONNX file without captchalab metadata; export it "
                                 "with 'captchalab export'")
        self.card = ModelCard.from_json(raw, path)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{path}: expected one input, the ONNX model has {len(inputs)}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        pre = self.card.preprocessing
        if len(shape) != 4 or list(shape[1:]) != [1, pre.height, pre.width]:
            raise ModelFileError(
                f"{path}: the ONNX input has shape {shape}, the metadata's preprocessing "
                f"gives (N, 1, {pre.height}, {pre.width})")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})[0]
