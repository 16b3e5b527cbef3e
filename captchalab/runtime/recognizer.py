"""``Recognizer``: load a model file once, then read captchas from any image source.

The Recognizer is the one door to a trained model: the CLI, the service, the export's
parity check, evaluation and the centre annotation tool all read through it.

- ``predict(images)`` reads one image or a list; with ``errors="return"`` a bad image gives
  an :class:`ImageFailure` in its place and the others are still read.
- ``read_folder(DATA)`` reads a labelled folder (labels folded as the model was trained).
- ``prepare(image)`` and ``read(pixels)`` split reading in two for callers that batch
  images from several sources into one forward pass (the service's micro-batcher).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from captchalab.data.alphabet import Alphabet
from captchalab.data.dataset import LabelledFolder, Sample, read_labelled_folder
from captchalab.data.preprocess import ImageError, ImageInput, Preprocessing
from captchalab.runtime import arithmetic, ctc
from captchalab.runtime.constraints import (
    ConstraintError,
    Constraints,
    constrain_outputs,
    symbol_groups,
)
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import Decoder, Reading, get_decoder
from captchalab.runtime.model_file import ModelCard, ModelFileError, load_model_file, resolve_model

Backend = Callable[[np.ndarray], np.ndarray]  # normalised batch -> raw network outputs


class UnorderedReadingError(ValueError):
    """Raised when a string is asked of a model that only knows which symbols are present."""


@dataclass(frozen=True)
class Prediction:
    """What the model reads in one image.

    ``characters`` is the text for families that read order; for the multilabel family
    (``reading.ordered`` false) it is the set of symbols present, in alphabet order, and
    ``text`` refuses to invent a string from it.
    """

    characters: str
    confidence: float  # probability of the whole reading
    char_confidences: tuple[float, ...]  # probability of each character
    reading: Reading
    expression: bool = False  # the model reads arithmetic questions (``answer``)

    @property
    def ordered(self) -> bool:
        return self.reading.ordered

    @property
    def text(self) -> str:
        if not self.ordered:
            raise UnorderedReadingError(
                "this model (multilabel) tells which characters are present, not their order; "
                f"use .characters ({self.characters!r}) or train a string-reading family")
        return self.characters

    @property
    def answer(self) -> int:
        """The integer answer of an arithmetic reading (``7+3=?`` -> 10); an
        :class:`ExpressionError` that says why when the reading has none."""
        return arithmetic.answer(self.text)

    def to_dict(self) -> dict:
        shown = self.reading.as_dict(self.characters, self.confidence, self.char_confidences)
        if self.expression:
            try:
                shown["answer"] = self.answer
            except arithmetic.ExpressionError as error:
                shown |= {"answer": None, "answer_error": str(error)}
        return shown


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be read (``predict(..., errors="return")``), and why."""

    error: Exception

    def __str__(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class Alignment:
    """A known label aligned to a CTC model's output frames."""

    frames: int  # output frames of the image
    centres: tuple[float, ...]  # each character's centre, in frames
    probability: float  # P(label | image), summed over its alignments


@dataclass
class FolderReading:
    """A labelled folder read by a model: its samples with the prediction of each."""

    folder: LabelledFolder
    predictions: list[Prediction]
    seconds: float  # reading time, decoding the files included

    @property
    def samples(self) -> list[Sample]:
        return self.folder.samples

    @property
    def truths(self) -> list[str]:
        return self.folder.labels


class Recognizer:
    """A trained model ready to predict: preprocessing, network and decoder from one file.

    >>> r = Recognizer.load("runs/v2/model.onnx")  # or model.safetensors
    >>> r.predict("a.png").text
    """

    def __init__(self, card: ModelCard, backend: Backend, path: str = "model") -> None:
        self.path = path
        self.card = card
        self.alphabet = Alphabet(card.alphabet)
        self.decoder: Decoder = get_decoder(card.decoder)
        self.backend = backend

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", threads: int | None = None
             ) -> Recognizer:
        """Load a model: ``.onnx`` (written by ``captchalab export``; runs with onnxruntime,
        no torch) or ``.safetensors`` (written by ``captchalab train``; runs with PyTorch).
        ``threads`` caps onnxruntime's intra-op threads (default: one per core); ``"base"``
        is the packaged general base model (zero labels: read what it can, case-folded)."""
        path = resolve_model(path)
        if path.suffix.lower() == ".onnx":
            from captchalab.runtime.onnx_backend import OnnxBackend

            backend = OnnxBackend(path, device, threads)
            return cls(backend.card, backend, str(path))
        model_file = load_model_file(path)
        try:
            from captchalab.runtime.torch_backend import TorchBackend
        except ImportError:
            raise ModelFileError(
                f"{path}: running a .safetensors model needs PyTorch (pip install "
                "'captchalab[train]'); or export it with 'captchalab export' and use the "
                ".onnx file") from None
        return cls(model_file.card, TorchBackend(model_file, str(path), device), str(path))

    @property
    def family(self) -> str:
        return self.card.family

    @property
    def preprocessing(self) -> Preprocessing:
        return self.card.preprocessing

    @property
    def decoding(self) -> DecodingSettings:
        """The decoding settings stored in the model file (tuned when it was trained)."""
        return self.card.decoding

    @property
    def reading(self) -> Reading:
        return self.decoder.reading

    @property
    def ordered(self) -> bool:
        """Whether the model reads strings (every family but multilabel)."""
        return self.decoder.ordered

    # -- reading in two steps, for callers that batch images from many sources -----------
    def prepare(self, image: ImageInput) -> np.ndarray:
        """One image as the ``(H, W)`` uint8 pixels the model reads; ``ImageError`` if bad."""
        return self.preprocessing.load(image)

    def outputs(self, pixels: np.ndarray) -> np.ndarray:
        """Raw network outputs for a ``(N, H, W)`` batch of prepared pixels."""
        return self.backend(self.preprocessing.normalize(pixels))

    def read(self, pixels: np.ndarray, decoding: DecodingSettings | None = None,
             constraints: Constraints | None = None) -> list[Prediction]:
        """Predictions for a ``(N, H, W)`` batch of prepared pixels."""
        return self.decode(self.outputs(pixels), decoding, constraints)

    def decode(self, outputs: np.ndarray, decoding: DecodingSettings | None = None,
               constraints: Constraints | None = None) -> list[Prediction]:
        """Readings of raw network outputs, under ``constraints`` and the model file's own
        (see :mod:`captchalab.runtime.constraints`)."""
        alphabet, settings = self.alphabet, decoding or self.decoding
        constraints = (constraints or Constraints()).merged_with(self.card.constraints)
        if constraints.active:
            alphabet, groups = symbol_groups(self.alphabet, constraints)
            outputs = constrain_outputs(outputs, self.decoder.name, groups)
            settings = self._bounded(settings, constraints.length, outputs)
        expression = self.card.reads == "expression"
        return [Prediction(alphabet.decode(d.labels), d.confidence, d.char_confidences,
                           self.reading, expression)
                for d in self.decoder(outputs, settings)]

    def _bounded(self, settings: DecodingSettings, length: tuple[int, int] | None,
                 outputs: np.ndarray) -> DecodingSettings:
        """The decoding settings with a length bound, or a one-line error if the model
        cannot read such a length."""
        if length is None:
            return settings
        low, high = length
        if self.decoder.name == "presence":
            raise ConstraintError(f"{self.path}: a {self.family} model reads which symbols are "
                                  "present, not how many: length does not apply")
        if self.decoder.name == "positions":
            fixed = self.card.config.get("length")
            if not low <= fixed <= high:
                raise ConstraintError(f"{self.path}: this {self.family} model reads exactly "
                                      f"{fixed} characters; length {_span(length)} is impossible")
            return settings
        if self.decoder.name == "ctc" and low > outputs.shape[1]:
            raise ConstraintError(f"{self.path}: the model has {outputs.shape[1]} output frames; "
                                  f"it cannot read {low} characters")
        return replace(settings, bounds=(low, high))

    # -- reading in one step -------------------------------------------------------------
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 64,
        decoding: DecodingSettings | None = None,
        errors: Literal["raise", "return"] = "raise",
        allowed: str | None = None,
        length: int | tuple[int, int] | None = None,
        case: str | None = None,
    ) -> Prediction | ImageFailure | list[Prediction | ImageFailure]:
        """Read one image (path, bytes, PIL image or array) or a list of them, in batches.

        A bad image raises an :class:`ImageError` naming it, or with ``errors="return"``
        gives an :class:`ImageFailure` in its place while the other images are read.
        ``allowed`` (the symbols that may appear), ``length`` (an int or a (min, max) pair)
        and ``case`` (``"as-trained"``, ``"lower"`` or ``"upper"``) constrain the readings
        inside the decoder; confidences are then probabilities of the constrained reading.
        """
        single = not isinstance(images, (list, tuple))
        results = self._predict([images] if single else list(images), batch_size, decoding,
                                errors, Constraints.make(allowed, length, case))
        return results[0] if single else results

    def _predict(self, items: list, batch_size: int, decoding: DecodingSettings | None,
                 errors: str, constraints: Constraints) -> list[Prediction | ImageFailure]:
        results: list[Prediction | ImageFailure] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            loaded: list[np.ndarray | ImageFailure] = []
            for item in chunk:
                try:
                    loaded.append(self.prepare(item))
                except (ImageError, OSError) as error:
                    if errors == "raise":
                        where = f"{item}: " if isinstance(item, (str, Path)) else ""
                        raise type(error)(f"{where}{error}") from None
                    loaded.append(ImageFailure(error))
            good = [array for array in loaded if not isinstance(array, ImageFailure)]
            readings = iter(self.read(np.stack(good), decoding, constraints) if good else [])
            results.extend(x if isinstance(x, ImageFailure) else next(readings) for x in loaded)
        return results

    def read_folder(self, data_dir: str | Path, batch_size: int = 64,
                    decoding: DecodingSettings | None = None, skip_bad: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    constraints: Constraints | None = None) -> FolderReading:
        """Read every image of a labelled folder (labels case-folded if the model was
        trained so); bad files are one error unless ``skip_bad``. ``progress(done, total)``
        is called after each batch."""
        folder = read_labelled_folder(data_dir, case_insensitive=self.card.data.case_insensitive)
        folder.raise_if_bad(skip_bad)
        predictions: list[Prediction] = []
        started = time.perf_counter()
        for start in range(0, len(folder.samples), batch_size):
            chunk = [s.path for s in folder.samples[start : start + batch_size]]
            predictions.extend(self._predict(chunk, batch_size, decoding, "raise", constraints))
            if progress:
                progress(len(predictions), len(folder.samples))
        return FolderReading(folder, predictions, time.perf_counter() - started)

    def align(self, images: Sequence[ImageInput], labels: Sequence[str],
              batch_size: int = 64) -> list[Alignment | None]:
        """Each known label aligned to the output frames of its image (CTC models only);
        ``None`` for a label longer than the image has frames."""
        if self.decoder.name != "ctc":
            raise ModelFileError(f"{self.path}: aligning labels needs a CTC model (family "
                                 f"crnn), this one is {self.family}")
        alignments: list[Alignment | None] = []
        for start in range(0, len(images), batch_size):
            pixels = np.stack([self.prepare(i) for i in images[start : start + batch_size]])
            outputs = self.outputs(pixels).astype(np.float64)
            for log_probs, label in zip(outputs, labels[start : start + batch_size]):
                indices = self.alphabet.encode(label)
                if len(indices) > len(log_probs):
                    alignments.append(None)
                    continue
                spans = ctc.align(log_probs, indices)
                centres = tuple(ctc.centre_of(log_probs[:, i], span)
                                for i, span in zip(indices, spans))
                probability = float(np.exp(ctc.sequence_log_prob(log_probs, indices)))
                alignments.append(Alignment(len(log_probs), centres, probability))
        return alignments


def _span(length: tuple[int, int]) -> str:
    low, high = length
    return str(low) if low == high else f"{low} to {high}"
