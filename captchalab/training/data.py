"""Training data behind one interface: a labelled folder, or a synthetic scheme's stream.

Either way the trainer sees :class:`TrainingData`: a fixed validation set, each epoch's
training images (the same for a folder, fresh ones for a stream), the alphabet, the fitted
preprocessing and the facts the model card records. A folder's images are decoded once;
:class:`PixelCache` lets staged restarts and self-training rounds reuse them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from captchalab.data import Alphabet, LabelledFolder, Preprocessing, Sample
from captchalab.data.annotations import ANNOTATIONS_FILE, centres_for, read_centres
from captchalab.data.dataset import DatasetError
from captchalab.data.preprocess import both_cases
from captchalab.generators import Scheme
from captchalab.models import DataShape, Targets
from captchalab.reporting.progress import ProgressReporter
from captchalab.runtime.arithmetic import is_expression
from captchalab.runtime.model_file import DataFacts
from captchalab.training.config import TrainConfig
from captchalab.training.synthetic import VALIDATION_SEED_OFFSET, SyntheticStream, draw, fit_scheme


@dataclass
class Images:
    """Preprocessed images with their labels, ready for batching."""

    pixels: np.ndarray  # (N, H, W) uint8
    labels: list[str]
    targets: torch.Tensor  # (N, L) 1-based class indices, 0 = padding
    lengths: torch.Tensor  # (N,)
    centres: torch.Tensor | None = None  # (N, L, 2) in model-input pixels

    @classmethod
    def make(cls, pixels: np.ndarray, labels: list[str], alphabet: Alphabet,
             centres: torch.Tensor | None = None) -> Images:
        targets, lengths = encode_labels(labels, alphabet)
        return cls(pixels, labels, targets, lengths, centres)

    def __len__(self) -> int:
        return len(self.labels)

    def targets_of(self, index: torch.Tensor | slice) -> Targets:
        return Targets(self.targets[index], self.lengths[index],
                       None if self.centres is None else self.centres[index].clone())


def encode_labels(labels: list[str], alphabet: Alphabet) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``(N, max_len)`` class indices and the length of each label."""
    width = max((len(label) for label in labels), default=1)
    targets = torch.zeros(len(labels), width, dtype=torch.long)
    for i, label in enumerate(labels):
        targets[i, : len(label)] = torch.tensor(alphabet.encode(label), dtype=torch.long)
    return targets, torch.tensor([len(label) for label in labels], dtype=torch.long)


def all_expressions(labels: list[str]) -> bool:
    """Whether the labels are arithmetic questions (``7+3=?``): all read as one, and some
    have an operator that is not the letter ``x`` (``2x3`` alone could be a code)."""
    return bool(labels) and all(map(is_expression, labels)) and any(
        set(label) & set("+-×÷*/=") for label in labels)


def padded_centres(centres: list[list[tuple[float, float]]], width: int) -> torch.Tensor:
    """``(N, width, 2)`` centres, zero beyond each label's end."""
    table = torch.zeros(len(centres), width, 2)
    for i, points in enumerate(centres):
        if points:
            table[i, : len(points)] = torch.tensor(points, dtype=torch.float32)
    return table


def fitted_preprocessing(sizes: list[tuple[int, int]], lengths: list[int], symbols: Iterable[str],
                         config: TrainConfig) -> Preprocessing:
    """The input size for these image sizes, label lengths and symbols (the height from the
    data unless the run sets it), with the run's grey, invert and deskew options."""
    fitted = Preprocessing.fit(sizes, config.height, lengths, both_cases(symbols))
    return replace(fitted, invert=config.invert, deskew=config.deskew, grey=config.grey)


class PixelCache:
    """Decoded images by file and input geometry, so several runs on the same folder (staged
    restarts, self-training rounds) decode each file once."""

    def __init__(self) -> None:
        self.arrays: dict[tuple, np.ndarray] = {}

    def load(self, path: Path, preprocessing: Preprocessing) -> np.ndarray:
        geometry = (preprocessing.height, preprocessing.width, preprocessing.background,
                    preprocessing.invert, preprocessing.deskew, preprocessing.grey)
        key = (path, *geometry)
        if key not in self.arrays:
            self.arrays[key] = preprocessing.load(path)
        return self.arrays[key]


class TrainingData:
    """What a training run reads: epochs of training images and one validation set."""

    alphabet: Alphabet
    preprocessing: Preprocessing
    validation: Images
    facts: DataFacts
    skipped: int = 0
    expressions: bool = False  # every label is an arithmetic question (the model answers)

    def training(self, epoch: int, prefetch: bool = True) -> Images:
        """Epoch ``epoch``'s training images (0-based); ``prefetch`` may prepare the next."""
        raise NotImplementedError

    @property
    def train_count(self) -> int:
        raise NotImplementedError

    @property
    def label_lengths(self) -> list[int]:
        raise NotImplementedError

    @property
    def source_width(self) -> float:
        """Median width of the original training images, in pixels."""
        raise NotImplementedError

    def labelled_images(self) -> Images | None:
        """The fixed labelled training images, where there are some (a folder's, not a
        stream's): what the run looks at before it starts (e.g. which case they draw)."""
        return None

    def shape(self) -> DataShape:
        return DataShape(self.alphabet.num_classes, self.preprocessing.height,
                         self.preprocessing.width, tuple(self.label_lengths), self.source_width,
                         self.expressions,
                         self.train_count if self.labelled_images() is not None else 0)

    def close(self) -> None:
        """Release background workers (a stream's)."""


class FolderData(TrainingData):
    """A labelled folder's training and validation samples, decoded once."""

    def __init__(self, folder: LabelledFolder, train: list[Sample], val: list[Sample],
                 preprocessing: Preprocessing, train_images: Images, val_images: Images,
                 case_insensitive: bool) -> None:
        self.folder, self.train, self.val = folder, train, val
        self.alphabet = folder.alphabet
        self.preprocessing = preprocessing
        self.train_images, self.validation = train_images, val_images
        self.skipped = len(folder.bad)
        self.expressions = all_expressions([s.label for s in train])
        self.facts = DataFacts(folder=folder.root.name, fingerprint=folder.fingerprint,
                               train_count=len({s.path for s in train}), val_count=len(val),
                               skipped=self.skipped, case_insensitive=case_insensitive)

    @classmethod
    def load(cls, folder: LabelledFolder, train: list[Sample], val: list[Sample],
             config: TrainConfig, reporter: ProgressReporter,
             preprocessing: Preprocessing | None = None, needs_centres: bool = False,
             cache: PixelCache | None = None) -> FolderData:
        """Load every image once. A given ``preprocessing`` (resuming, or starting from a
        model) is used as it is; otherwise its size and normalisation statistics are
        fitted to the training images."""
        fitted = preprocessing is None
        if preprocessing is None:
            preprocessing = fitted_preprocessing(
                [s.size for s in train], [len(s.label) for s in train],
                {symbol for s in train for symbol in s.label}, config)
        cache = cache or PixelCache()
        with reporter.task("loading images", len(train) + len(val)) as advance:
            def load(samples: list[Sample]) -> np.ndarray:
                arrays = []
                for sample in samples:
                    arrays.append(cache.load(sample.path, preprocessing))
                    advance()
                shape = (0, preprocessing.height, preprocessing.width)
                return np.stack(arrays) if arrays else np.zeros(shape, np.uint8)

            train_pixels, val_pixels = load(train), load(val)
        if fitted:
            preprocessing = preprocessing.with_statistics(train_pixels)
        train_centres = val_centres = None
        if needs_centres:
            source = Path(config.centres) if config.centres else folder.root / ANNOTATIONS_FILE
            if not source.is_file():
                raise DatasetError(
                    f"{source}: not found; the {config.model} family trains on character "
                    "centres. Derive them from string labels with 'captchalab "
                    f"annotate-centres CRNN_MODEL {folder.root}' or give `centres`")
            table = read_centres(source)
            train_centres = load_centres(train, table, source, preprocessing)
            val_centres = load_centres(val, table, source, preprocessing)
        alphabet = folder.alphabet
        return cls(folder, train, val, preprocessing,
                   Images.make(train_pixels, [s.label for s in train], alphabet, train_centres),
                   Images.make(val_pixels, [s.label for s in val], alphabet, val_centres),
                   config.case_insensitive)

    def training(self, epoch: int, prefetch: bool = True) -> Images:
        return self.train_images

    def labelled_images(self) -> Images:
        return self.train_images

    @property
    def train_count(self) -> int:
        return len(self.train)

    @property
    def label_lengths(self) -> list[int]:
        return sorted({len(s.label) for s in self.train})

    @property
    def source_width(self) -> float:
        return float(np.median([s.size[0] for s in self.train]))


def load_centres(samples: list[Sample], table: dict, source: Path,
                 preprocessing: Preprocessing) -> torch.Tensor:
    """``(N, L, 2)`` centres scaled from each original image to the model's input size."""
    width = max((len(s.label) for s in samples), default=1)
    centres = torch.zeros(len(samples), width, 2)
    for i, (sample, points) in enumerate(zip(samples, centres_for(samples, table, source))):
        scale = (preprocessing.width / sample.size[0], preprocessing.height / sample.size[1])
        for j, (x, y) in enumerate(points):
            centres[i, j] = torch.tensor([x * scale[0], y * scale[1]])
    return centres


class StreamData(TrainingData):
    """A synthetic scheme: a fixed validation set and fresh training images every epoch,
    drawn in the background while the previous epoch trains."""

    def __init__(self, scheme: Scheme, config: TrainConfig, reporter: ProgressReporter,
                 preprocessing: Preprocessing | None = None, needs_centres: bool = False,
                 alphabet: Alphabet | None = None, lengths: list[int] | None = None) -> None:
        """``alphabet`` and ``lengths`` make the scheme draw the symbols and label lengths of
        the data a pretrained model is meant for; ``preprocessing`` fixes the input size."""
        self.scheme = scheme = fit_scheme(scheme, alphabet, lengths)
        self.needs_centres = needs_centres
        self.expressions = scheme.text.kind == "arithmetic"
        self.alphabet = Alphabet(scheme.alphabet)
        fitted = preprocessing is None
        self.preprocessing = preprocessing or fitted_preprocessing(
            [scheme.size], list(range(scheme.length[0], scheme.length[1] + 1)), scheme.alphabet,
            config)
        with reporter.task(f"drawing {config.stream_val} {scheme.name} validation captchas", 1):
            drawn = draw(scheme, self.preprocessing, config.seed + VALIDATION_SEED_OFFSET, 0,
                         config.stream_val)
        self.validation = self._images(drawn)
        self.stream = SyntheticStream(scheme, self.preprocessing, config.stream_epoch,
                                      config.seed)
        self.drawn_epoch, self.current = -1, self.validation
        with reporter.task(f"drawing {config.stream_epoch} {scheme.name} training captchas", 1):
            self.training(0)
        if fitted:  # normalisation measured on the first epoch's images
            self.preprocessing = self.preprocessing.with_statistics(self.current.pixels)
            self.stream.preprocessing = self.preprocessing
        self.facts = DataFacts(folder=Path(scheme.source or scheme.name).name,
                               scheme=config.scheme, fingerprint=scheme.fingerprint(),
                               train_count=config.stream_epoch, val_count=len(self.validation),
                               case_insensitive=config.case_insensitive)

    def _images(self, drawn) -> Images:
        centres = None
        if self.needs_centres:
            centres = padded_centres(drawn.centres, max(map(len, drawn.labels), default=1))
        return Images.make(drawn.pixels, drawn.labels, self.alphabet, centres)

    def training(self, epoch: int, prefetch: bool = True) -> Images:
        if epoch != self.drawn_epoch:
            self.current = self._images(self.stream.epoch(epoch, prefetch))
            self.drawn_epoch = epoch
        return self.current

    @property
    def train_count(self) -> int:
        return self.stream.epoch_size

    @property
    def label_lengths(self) -> list[int]:
        low, high = self.scheme.length
        return list(range(low, high + 1))

    @property
    def source_width(self) -> float:
        return float(self.scheme.width)

    def close(self) -> None:
        self.stream.close()
