"""Runtime: model files, decoding and the ``Recognizer`` that serves predictions."""

from captchalab.runtime.artifact import ModelFileError, load_model_file, save_model_file
from captchalab.runtime.recognizer import DecodingSettings, Prediction, Recognizer

__all__ = [
    "DecodingSettings",
    "ModelFileError",
    "Prediction",
    "Recognizer",
    "load_model_file",
    "save_model_file",
]
