"""The model file: one ``.safetensors`` holding the weights and the model card (JSON).

The :class:`ModelCard` is everything a runtime, a fine-tuning run or a person needs to know
about a model: what it reads (family, alphabet, decoder and its settings), how images are
prepared, what it was trained on and how well it read its validation images. It is read
and written here only; every other module uses its fields.

Nothing is ever unpickled: tensors are raw safetensors data and the card is JSON under the
``captchalab`` metadata key. Torch-free, so lightweight runtimes can read it. A training
checkpoint is a model file whose metadata also holds the loop's state (``CHECKPOINT_KEY``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from captchalab.data.alphabet import Alphabet
from captchalab.data.preprocess import Preprocessing
from captchalab.fileio import atomic_write_bytes
from captchalab.runtime.constraints import Constraints
from captchalab.runtime.decoded import DecodingSettings

FORMAT_NAME = "captchalab-model"
FORMAT_VERSION = 2  # 2: the typed model card; version 1 files are read and upgraded
READABLE_VERSIONS = (1, 2)
METADATA_KEY = "captchalab"
CHECKPOINT_KEY = "captchalab.checkpoint"


class ModelFileError(ValueError):
    """A model file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class DataFacts:
    """What the model was trained on."""

    folder: str = ""  # the labelled folder's name (or the synthetic scheme's)
    scheme: str | None = None  # the synthetic scheme, for models trained on a stream
    fingerprint: str = ""  # of the files and labels (a resumed run must match it)
    train_count: int = 0
    val_count: int = 0
    skipped: int = 0  # bad files left out with skip_bad
    case_insensitive: bool = False  # labels were folded to lower case


@dataclass(frozen=True)
class TrainingFacts:
    """How the model was trained and which of its epochs the file holds."""

    best_epoch: int | None = None  # the epoch whose weights the file holds
    epochs_run: int = 0
    steps_run: int = 0
    steps_planned: int = 0
    minutes: float = 0.0
    ended: str = ""  # "schedule", "converged", "budget" or "paused"
    why: str = ""  # how it ended, in words
    cycles: int = 1  # one-cycle schedules chained (warm restarts)
    selection: str = ""  # how the kept epoch was chosen among the validated ones
    started_from: str = ""  # the model whose weights training started from ("" fresh)
    device: str = ""
    config: dict = field(default_factory=dict)  # the TrainConfig, as run

    @property
    def schedule_share(self) -> float:
        """Share of the planned optimiser steps that were run."""
        return self.steps_run / self.steps_planned if self.steps_planned else 0.0


@dataclass(frozen=True)
class ExportFacts:
    """Where an ONNX file came from."""

    source: str
    source_sha256: str
    opset: int
    int8: bool = False


@dataclass(frozen=True)
class ModelCard:
    """The typed record that travels with the weights (format version 2)."""

    family: str
    config: dict  # the family's constructor arguments: the network is rebuilt from them
    decoder: str
    alphabet: str
    preprocessing: Preprocessing
    label_lengths: tuple[int, ...] = ()  # distinct lengths of the training labels
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    metrics: dict = field(default_factory=dict)  # validation metrics of the kept epoch
    data: DataFacts = field(default_factory=DataFacts)
    training: TrainingFacts = field(default_factory=TrainingFacts)
    export: ExportFacts | None = None
    created: str = ""
    constraints: Constraints = field(default_factory=Constraints)  # applied by default
    reads: str = "text"  # "expression": readings are arithmetic questions with an answer
    about: dict = field(default_factory=dict)  # provenance in words and figures (the base model's)

    @property
    def symbols(self) -> Alphabet:
        return Alphabet(self.alphabet)

    def with_export(self, export: ExportFacts) -> ModelCard:
        return replace(self, export=export)

    def to_json(self) -> str:
        record = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **asdict(self)}
        record["label_lengths"] = list(self.label_lengths)
        record["constraints"] = self.constraints.to_dict()
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str, path: str | Path) -> ModelCard:
        """The card of a model file of any readable version; ``path`` only names the file
        in errors."""
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ModelFileError(f"{path}: corrupt captchalab metadata ({error})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{path}: not a captchalab model file")
        version = record.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ModelFileError(
                f"{path}: model file format version {version}, this captchalab reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; retrain or use a matching captchalab")
        if version == 1:
            record = _upgrade_version_1(record)
        for key in ("family", "alphabet", "preprocessing"):
            if key not in record:
                raise ModelFileError(f"{path}: captchalab metadata lacks {key!r}")
        try:
            return cls(
                family=record["family"], config=dict(record.get("config", {})),
                decoder=record.get("decoder", "ctc"), alphabet=record["alphabet"],
                preprocessing=Preprocessing.from_dict(record["preprocessing"]),
                label_lengths=tuple(record.get("label_lengths", ())),
                decoding=_typed(DecodingSettings, record.get("decoding")),
                metrics=dict(record.get("metrics") or {}),
                data=_typed(DataFacts, record.get("data")),
                training=_typed(TrainingFacts, record.get("training")),
                export=_typed(ExportFacts, record["export"]) if record.get("export") else None,
                created=record.get("created", ""),
                constraints=Constraints.from_dict(record.get("constraints")),
                reads=record.get("reads", "text"), about=dict(record.get("about") or {}))
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{path}: malformed captchalab metadata ({error})") from None


def _typed(kind: type, values: dict | None) -> Any:
    """``kind`` from the stored fields it knows (fields added later keep their defaults)."""
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in (values or {}).items() if k in known})


def _upgrade_version_1(record: dict) -> dict:
    """Version 1 kept the best epoch as ``training.epochs``; version 2 names it."""
    training = dict(record.get("training") or {})
    if "epochs" in training:
        training["best_epoch"] = training.pop("epochs")
    return {**record, "training": training}


@dataclass
class ModelFile:
    """Weights (numpy arrays by parameter name), the model card and, in a checkpoint, the
    training loop's state."""

    tensors: dict[str, np.ndarray]
    card: ModelCard
    checkpoint: dict | None = None


def save_model_file(path: str | Path, tensors: dict[str, np.ndarray], card: ModelCard,
                    checkpoint: dict | None = None) -> Path:
    """Write a model file (or, with ``checkpoint``, a training checkpoint) atomically."""
    metadata = {METADATA_KEY: card.to_json()}
    if checkpoint is not None:
        metadata[CHECKPOINT_KEY] = json.dumps(checkpoint)
    arrays = {name: np.require(value, requirements="C") for name, value in tensors.items()}
    return atomic_write_bytes(path, save_tensors(arrays, metadata=metadata))


BASE_MODEL = "base"  # the name that reads the packaged general base model
PACKAGED_BASE_MODEL = Path(__file__).parent / "weights" / "base.safetensors"


def base_model_path() -> Path:
    """The base model file: ``$CAPTCHALAB_BASE_MODEL``, else the packaged one."""
    if os.environ.get("CAPTCHALAB_BASE_MODEL"):
        return Path(os.environ["CAPTCHALAB_BASE_MODEL"])
    return PACKAGED_BASE_MODEL


def resolve_model(path: str | Path) -> Path:
    """``path``, or for ``"base"`` (when no such file is here) the packaged base model."""
    if str(path) == BASE_MODEL and not Path(path).exists():
        found = base_model_path()
        if not found.is_file():
            raise ModelFileError(f"base: the packaged base model is missing ({found}); build it "
                                 "with `make base-model`")
        return found
    return Path(path)


def _raw_metadata(path: Path) -> dict[str, str]:
    path = resolve_model(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a safetensors model file ({error})") from None


def read_card(path: str | Path) -> ModelCard:
    """The model card of a model file (its weights are not read)."""
    path = Path(path)
    raw = _raw_metadata(path).get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without captchalab metadata")
    return ModelCard.from_json(raw, path)


def load_model_file(path: str | Path) -> ModelFile:
    """Weights, card and (for a checkpoint) loop state of a model file."""
    path = resolve_model(path)
    metadata = _raw_metadata(path)
    if METADATA_KEY not in metadata:
        raise ModelFileError(f"{path}: safetensors file without captchalab metadata")
    card = ModelCard.from_json(metadata[METADATA_KEY], path)
    checkpoint = json.loads(metadata[CHECKPOINT_KEY]) if CHECKPOINT_KEY in metadata else None
    try:
        tensors = load_tensors(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: unreadable weights ({error})") from None
    return ModelFile(tensors, card, checkpoint)
