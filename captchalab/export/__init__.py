"""Export: a trained model file -> a self-contained ONNX file (optionally int8), and the
parity check that proves it reads captchas exactly as the PyTorch model does."""

from captchalab.export.parity import ParityReport, check_parity
from captchalab.export.to_onnx import export_onnx

__all__ = ["ParityReport", "check_parity", "export_onnx"]
