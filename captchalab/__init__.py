"""captchalab: train, evaluate and serve recognizers for text captchas."""

from captchalab.runtime import (
    DecodingSettings,
    ModelFileError,
    Prediction,
    Recognizer,
    UnorderedReadingError,
)

__version__ = "0.1.0"
__all__ = ["DecodingSettings", "ModelFileError", "Prediction", "Recognizer",
           "UnorderedReadingError", "__version__"]
