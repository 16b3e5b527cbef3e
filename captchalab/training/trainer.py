"""``train``: a labelled folder in, a model file (plus metrics and curves) out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from captchalab.data import (
    Alphabet,
    LabelledFolder,
    Preprocessing,
    Sample,
    read_labelled_folder,
    split_samples,
)
from captchalab.data.annotations import ANNOTATIONS_FILE, centres_for, read_centres
from captchalab.data.dataset import DatasetError
from captchalab.evaluation.metrics import headline, reading_metrics
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.generators import Scheme, load_scheme
from captchalab.models import DataShape, Family, Targets, build, family_class
from captchalab.runtime.artifact import (
    ModelFile,
    ModelFileError,
    load_model_file,
    save_model_file,
)
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import THRESHOLDS, Decoder, get_decoder
from captchalab.runtime.torch_backend import resolve_device, state_to_numpy
from captchalab.training.augment import Augmentation
from captchalab.training.config import TARGET_STEPS, TrainConfig
from captchalab.training.distributed import Distributed, process_group
from captchalab.training.plots import plot_curves
from captchalab.training.progress import ProgressReporter
from captchalab.training.schedule import one_cycle
from captchalab.training.synthetic import (
    VALIDATION_SEED_OFFSET,
    SyntheticStream,
    draw,
    fit_scheme,
    padded_centres,
    synthetic_folder,
    synthetic_samples,
)
from captchalab.training.transfer import SIZE_KEYS, transfer_weights

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
SUMMARY_FILE = "summary.json"
RNG_TENSOR = "rng.cpu"  # the CPU random generator's state, in checkpoints
VALIDATE_EVERY_IMAGES = 512  # tiny training sets validate every few epochs, not every one


@dataclass
class TrainResult:
    """A finished run: the model file (its best epoch) with that epoch's final validation
    metrics, and every validation record of the run (``metrics.jsonl``)."""

    model_path: Path
    metrics: dict
    epochs: int  # epochs run
    minutes: float
    skipped: int
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)


@dataclass
class PreparedData:
    """Images as uint8 arrays with padded label indices, ready for batching."""

    folder: LabelledFolder
    alphabet: Alphabet
    preprocessing: Preprocessing
    train: list[Sample]
    val: list[Sample]
    train_pixels: np.ndarray
    val_pixels: np.ndarray
    train_targets: torch.Tensor
    train_lengths: torch.Tensor
    val_targets: torch.Tensor
    val_lengths: torch.Tensor
    train_centres: torch.Tensor | None = None  # (N, L, 2) in model-input pixels
    val_centres: torch.Tensor | None = None
    stream: SyntheticStream | None = None  # draws each epoch's training images
    drawn_epoch: int = -1

    def next_epoch(self, epoch: int, prefetch: bool = True) -> None:
        """Swap in epoch ``epoch``'s fresh synthetic images (nothing to do for a folder);
        with ``prefetch`` the next epoch's start drawing in the background."""
        if self.stream is None or epoch == self.drawn_epoch:
            return
        drawn = self.stream.epoch(epoch, prefetch)
        self.train = synthetic_samples(self.stream.scheme, drawn.labels)
        self.train_pixels = drawn.pixels
        self.train_targets, self.train_lengths = encode_labels(drawn.labels, self.alphabet)
        if self.train_centres is not None:
            self.train_centres = padded_centres(drawn.centres, self.train_targets.shape[1])
        self.drawn_epoch = epoch

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    @property
    def label_lengths(self) -> list[int]:
        return sorted({len(s.label) for s in self.train})

    def shape(self) -> DataShape:
        return DataShape(self.alphabet.num_classes, self.preprocessing.height,
                         self.preprocessing.width, tuple(self.label_lengths),
                         float(np.median([s.size[0] for s in self.train])))

    def targets(self, index: torch.Tensor | slice, validation: bool = False) -> Targets:
        labels, lengths, centres = ((self.val_targets, self.val_lengths, self.val_centres)
                                    if validation else
                                    (self.train_targets, self.train_lengths, self.train_centres))
        return Targets(labels[index], lengths[index],
                       None if centres is None else centres[index].clone())


def encode_labels(labels: list[str], alphabet: Alphabet) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``(N, max_len)`` class indices and the length of each label."""
    width = max((len(label) for label in labels), default=1)
    targets = torch.zeros(len(labels), width, dtype=torch.long)
    for i, label in enumerate(labels):
        targets[i, : len(label)] = torch.tensor(alphabet.encode(label), dtype=torch.long)
    return targets, torch.tensor([len(label) for label in labels], dtype=torch.long)


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


def fitted_preprocessing(sizes: list[tuple[int, int]], config: TrainConfig) -> Preprocessing:
    """The input size for these image sizes, with the run's invert and deskew options."""
    return replace(Preprocessing.fit(sizes, config.height), invert=config.invert,
                   deskew=config.deskew)


def prepare_data(
    folder: LabelledFolder, config: TrainConfig, reporter: ProgressReporter,
    preprocessing: Preprocessing | None = None, needs_centres: bool = False,
    split: tuple[list[Sample], list[Sample]] | None = None,
) -> PreparedData:
    """Split (unless ``split`` gives the training and validation samples), fit the
    preprocessing on the training images and load every image once.

    A given ``preprocessing`` (when resuming) is used as it is; otherwise its size and
    normalisation statistics are fitted to the training images.
    """
    train, val = split or split_samples(folder.samples, config.val_split, config.seed)
    fitted = preprocessing is None
    if preprocessing is None:
        preprocessing = fitted_preprocessing([s.size for s in train], config)
    with reporter.task("loading images", len(train) + len(val)) as advance:
        def load(samples: list[Sample]) -> np.ndarray:
            arrays = []
            for sample in samples:
                arrays.append(preprocessing.load(sample.path))
                advance()
            shape = (0, preprocessing.height, preprocessing.width)
            return np.stack(arrays) if arrays else np.zeros(shape, np.uint8)

        train_pixels, val_pixels = load(train), load(val)
    if fitted:
        preprocessing = preprocessing.with_statistics(train_pixels)
    alphabet = folder.alphabet
    train_targets, train_lengths = encode_labels([s.label for s in train], alphabet)
    val_targets, val_lengths = encode_labels([s.label for s in val], alphabet)
    data = PreparedData(folder, alphabet, preprocessing, train, val, train_pixels, val_pixels,
                        train_targets, train_lengths, val_targets, val_lengths)
    if needs_centres:
        source = Path(config.centres) if config.centres else folder.root / ANNOTATIONS_FILE
        if not source.is_file():
            raise DatasetError(
                f"{source}: not found; the {config.model} family trains on character centres. "
                "Derive them from string labels with 'captchalab annotate-centres CRNN_MODEL "
                f"{folder.root}' or pass --centres FILE")
        table = read_centres(source)
        data.train_centres = load_centres(train, table, source, preprocessing)
        data.val_centres = load_centres(val, table, source, preprocessing)
    return data


def parameter_groups(model: Family, backbone_lr: float) -> list[dict]:
    """The backbone's parameters and the rest, each with its learning-rate factor."""
    backbone = [p for name, p in model.named_parameters() if name.startswith("backbone.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
    return [{"params": backbone, "lr_scale": backbone_lr}, {"params": rest, "lr_scale": 1.0}]


def set_backbone_frozen(model: Family, frozen: bool) -> None:
    for name, parameter in model.named_parameters():
        if name.startswith("backbone."):
            parameter.requires_grad_(not frozen)


def prepare_stream(
    scheme: Scheme, config: TrainConfig, reporter: ProgressReporter,
    preprocessing: Preprocessing | None = None, needs_centres: bool = False,
    alphabet: Alphabet | None = None, lengths: list[int] | None = None,
) -> PreparedData:
    """Synthetic training data: a fixed validation set and a stream of fresh epochs.

    ``alphabet`` and ``lengths`` make the scheme draw the symbols and label lengths of the
    data a pretrained model is meant for; ``preprocessing`` fixes the model input size.
    """
    scheme = fit_scheme(scheme, alphabet, lengths)
    fitted = preprocessing is None
    if preprocessing is None:
        preprocessing = fitted_preprocessing([scheme.size], config)
    with reporter.task(f"drawing {config.stream_val} {scheme.name} validation captchas", 1):
        val = draw(scheme, preprocessing, config.seed + VALIDATION_SEED_OFFSET, 0,
                   config.stream_val)
    alphabet = Alphabet(scheme.alphabet)
    val_targets, val_lengths = encode_labels(val.labels, alphabet)
    stream = SyntheticStream(scheme, preprocessing, config.stream_epoch, config.seed)
    empty = torch.zeros(0, 1, dtype=torch.long)
    data = PreparedData(synthetic_folder(scheme, val.labels), alphabet, preprocessing, [],
                        synthetic_samples(scheme, val.labels), np.zeros((0, 1, 1), np.uint8),
                        val.pixels, empty, empty[:, 0], val_targets, val_lengths,
                        stream=stream)
    if needs_centres:
        data.val_centres = padded_centres(val.centres, val_targets.shape[1])
        data.train_centres = torch.zeros(0, 1, 2)
    with reporter.task(f"drawing {config.stream_epoch} {scheme.name} training captchas", 1):
        data.next_epoch(0)
    if fitted:
        data.preprocessing = preprocessing.with_statistics(data.train_pixels)
        stream.preprocessing = data.preprocessing
    return data


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], list]:
    state = optimizer.state_dict()
    tensors = {
        f"optimizer.{index}.{key}": value.detach().cpu().numpy().copy()
        for index, slots in state["state"].items()
        for key, value in slots.items()
    }
    return tensors, state["param_groups"]


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = torch.from_numpy(np.array(value))
    optimizer.load_state_dict({"state": state, "param_groups": groups})


@dataclass(frozen=True)
class StreamTarget:
    """The real data a synthetic stream is drawn for: its symbols, lengths and input."""

    alphabet: Alphabet
    lengths: list[int]
    preprocessing: Preprocessing


class Trainer:
    """One training run; ``run()`` returns the best model by validation accuracy."""

    def __init__(self, data_dir: str | Path | None, out_dir: str | Path, config: TrainConfig,
                 log: Callable[[str], None] = print, show_progress: bool = True,
                 split: tuple[list[Sample], list[Sample]] | None = None,
                 target: StreamTarget | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.out_dir = Path(out_dir)
        self.split, self.target = split, target
        self.distributed = Distributed.from_environment()
        main = self.distributed.is_main  # the other processes of a torchrun stay quiet
        self.config, self.log = config, log if main else (lambda _: None)
        self.reporter = ProgressReporter(enabled=show_progress and main)
        self.device = self.distributed.device(resolve_device(config.device))

    # -- set-up ---------------------------------------------------------------------------
    def read_folder(self) -> LabelledFolder:
        """The labelled folder, its bad files refused (or skipped and counted with --skip-bad)."""
        folder = read_labelled_folder(self.data_dir, self.config.alphabet,
                                      self.config.case_insensitive)
        folder.raise_if_bad(self.config.skip_bad)
        if folder.bad:
            total = len(folder.bad) + len(folder.samples)
            self.log(f"skipped {len(folder.bad)} bad file(s) of {total}")
        return folder

    def planned_steps(self, train_count: int) -> tuple[int, int]:
        """``(epochs, optimiser steps)`` of the schedule for ``train_count`` training images:
        ``--epochs``, or about the family's share of TARGET_STEPS (15 to 300 epochs)."""
        steps_per_epoch = max(1, -(-train_count // self.config.batch_size))
        target = TARGET_STEPS * family_class(self.config.model).schedule_scale
        epochs = self.config.epochs or int(np.clip(round(target / steps_per_epoch), 15, 300))
        return epochs, epochs * steps_per_epoch

    def _decoding(self, data: PreparedData) -> DecodingSettings:
        """The decoder settings before tuning (fixed length when all labels share one)."""
        lengths = data.label_lengths
        return DecodingSettings(self.config.decoding, self.config.beam_width,
                                lengths[0] if len(lengths) == 1 else None)

    def _metadata(self, data: PreparedData, model: Family, metrics: dict, epoch: int,
                  minutes: float, decoding: DecodingSettings) -> dict:
        return {
            "family": model.family,
            "config": model.config,
            "decoder": model.decoder,
            "alphabet": data.alphabet.symbols,
            "preprocessing": data.preprocessing.to_dict(),
            "label_lengths": data.label_lengths,
            "decoding": asdict(decoding),
            "metrics": metrics,
            "data": {
                "folder": data.folder.root.name,
                **({"scheme": self.config.scheme} if data.stream else {}),
                "fingerprint": data.folder.fingerprint,
                "train_count": len(data.train),
                "val_count": len(data.val),
                "skipped": len(data.folder.bad),
                "case_insensitive": self.config.case_insensitive,
            },
            "training": {"epochs": epoch, "minutes": round(minutes, 2),
                         "config": asdict(self.config)},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    # -- evaluation -----------------------------------------------------------------------
    @torch.inference_mode()
    def _val_outputs(self, model: Family, data: PreparedData, chunk: int = 256) -> torch.Tensor:
        """Network output on every validation image, in evaluation mode."""
        model.eval()
        outputs = [model(torch.from_numpy(data.preprocessing.normalize(
                       data.val_pixels[start : start + chunk])).to(self.device)).float().cpu()
                   for start in range(0, len(data.val), chunk)]
        return torch.cat(outputs)

    def _tune(self, decoder: Decoder, outputs: np.ndarray, data: PreparedData,
              settings: DecodingSettings) -> tuple[DecodingSettings, dict]:
        """Validation metrics with ``settings``; a thresholded decoder gets the threshold that
        reads the validation set best (ties go to the one nearest 0.5)."""
        truths = [s.label for s in data.val]
        candidates = ([replace(settings, threshold=t) for t in THRESHOLDS]
                      if decoder.thresholded else [settings])
        best: tuple[tuple, DecodingSettings, dict] | None = None
        for candidate in candidates:
            readings = [data.alphabet.decode(d.labels) for d in decoder(outputs, candidate)]
            metrics = reading_metrics(truths, readings, decoder.ordered, data.alphabet.symbols)
            rank = (headline(metrics), -abs(candidate.threshold - 0.5))
            if best is None or rank > best[0]:
                best = (rank, candidate, metrics)
        assert best is not None
        return best[1], best[2]

    def _validate(self, model: Family, data: PreparedData) -> tuple[dict, DecodingSettings]:
        """Per-epoch validation: loss and accuracy (CTC read greedily, which is fast)."""
        settings = self._decoding(data)
        if not len(data.val):
            return {}, settings
        outputs = self._val_outputs(model, data)
        with torch.inference_mode():
            loss = float(model.loss(outputs, data.targets(slice(None), validation=True)))
        decoder = get_decoder(model.decoder)
        quick = replace(settings, method="greedy")
        tuned, metrics = self._tune(decoder, outputs.numpy(), data, quick)
        record = {"val_loss": loss, "val_accuracy": headline(metrics)}
        record |= {f"val_{k}": v for k, v in metrics.items() if k != "count"}
        if decoder.thresholded:
            record["threshold"] = tuned.threshold
        return record, replace(settings, threshold=tuned.threshold)

    def _final_metrics(self, model: Family, data: PreparedData
                       ) -> tuple[dict, DecodingSettings]:
        """Validation metrics with the decoder the model file will use, tuned."""
        settings = self._decoding(data)
        if not len(data.val):
            return {}, settings
        outputs = self._val_outputs(model, data).numpy()
        tuned, metrics = self._tune(get_decoder(model.decoder), outputs, data, settings)
        return metrics, tuned

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        config = self.config
        torch.manual_seed(config.seed)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_path = self.out_dir / CHECKPOINT_FILE
        existing = self.out_dir / MODEL_FILE
        if existing.exists() and not (config.resume or config.overwrite):
            raise ModelFileError(f"{existing}: already exists; pass --resume to continue that "
                                 "run or --overwrite to replace it")
        resumed = None
        if config.resume:
            if not checkpoint_path.is_file():
                raise ModelFileError(f"{checkpoint_path}: no checkpoint to resume from")
            resumed = load_model_file(checkpoint_path)
        preprocessing = self.target.preprocessing if self.target else None
        source = None
        if config.init and resumed is None:
            source = load_model_file(config.init)
            preprocessing = Preprocessing.from_dict(source.metadata["preprocessing"])
        if resumed is not None:
            preprocessing = Preprocessing.from_dict(resumed.metadata["preprocessing"])
        family = family_class(config.model)
        if family.needs_centres and (preprocessing.deskew if preprocessing else config.deskew):
            raise ValueError(f"--deskew moves characters away from their annotated centres; "
                             f"the {config.model} family trains on centres")
        data = self._prepare(family, preprocessing)
        fingerprint = data.folder.fingerprint
        if resumed is not None and resumed.metadata["data"]["fingerprint"] != fingerprint:
            raise ModelFileError(f"{checkpoint_path}: was trained on different data; "
                                 "start a new run without --resume")
        if self.distributed.enabled and config.freeze_epochs:
            raise ValueError("--freeze-epochs is not available under torchrun: start the run "
                             "in one process")
        try:
            with process_group(self.distributed, self.device):
                return self._train(data, family, resumed, source)
        finally:
            data.close()

    def _prepare(self, family: type[Family], preprocessing: Preprocessing | None
                 ) -> PreparedData:
        """The labelled folder's images, or a synthetic scheme's stream with ``--scheme``."""
        config, target = self.config, self.target
        if config.scheme:
            return prepare_stream(load_scheme(config.scheme), config, self.reporter,
                                  preprocessing, family.needs_centres,
                                  target.alphabet if target else None,
                                  target.lengths if target else None)
        if self.data_dir is None:
            raise ValueError("nothing to train on: give a folder of labelled images or a "
                             "synthetic scheme (--scheme)")
        return prepare_data(self.read_folder(), config, self.reporter, preprocessing,
                            family.needs_centres, self.split)

    def _train(self, data: PreparedData, family: type[Family], resumed: ModelFile | None,
               source: ModelFile | None) -> TrainResult:
        config = self.config
        checkpoint_path = self.out_dir / CHECKPOINT_FILE
        if resumed is not None:
            model = build(resumed.metadata["family"], **resumed.metadata["config"])
        else:
            settings = family.configure(data.shape(), **config.model_options)
            if source is not None:  # the source's layer sizes, this data's alphabet and length
                inherited = {k: v for k, v in source.metadata["config"].items()
                             if k not in SIZE_KEYS}
                settings = {**inherited, **settings}
            model = build(config.model, **settings)
        if source is not None:
            moved = transfer_weights(model, source, data.alphabet, config.init)
            self.log(f"started from {config.init}: {len(moved.shared)} symbols carried over"
                     + (f", {len(moved.new)} new ({moved.new})" if moved.new else ""))
        model = model.to(self.device)
        network = self.distributed.wrap(model, self.device)  # averages gradients over ranks
        optimizer = torch.optim.AdamW(parameter_groups(model, config.backbone_lr),
                                      lr=config.learning_rate, weight_decay=config.weight_decay)
        augmentation = Augmentation() if config.augment else None
        epochs, total_steps = self.planned_steps(len(data.train))
        validate_every = max(1, -(-VALIDATE_EVERY_IMAGES // max(1, len(data.train))))
        budget = config.max_minutes * 60 if config.max_minutes else None

        epoch, step, elapsed, history = 0, 0, 0.0, []
        best_score = (-1.0, float("-inf"))
        decoding = self._decoding(data)
        if resumed is not None:
            state = resumed.metadata["checkpoint"]
            model.load_state_dict({k[len("model."):]: torch.from_numpy(np.array(v))
                                   for k, v in resumed.tensors.items() if k.startswith("model.")})
            _restore_optimizer(optimizer, resumed.tensors, state["param_groups"])
            epoch, step, elapsed = state["epoch"], state["step"], state["elapsed"]
            history, best_score = state["history"], tuple(state["best_score"])
            if RNG_TENSOR in resumed.tensors:  # dropout continues as if never paused
                torch.set_rng_state(torch.from_numpy(np.array(resumed.tensors[RNG_TENSOR])))
            self.log(f"resuming at epoch {epoch + 1} of {epochs}")
        distributed = self.distributed
        if distributed.rank:  # the same start as rank 0, then its own dropout
            torch.manual_seed(config.seed * 1_000 + distributed.rank + 7_919 * epoch)
        batch_size = distributed.batch_size(config.batch_size)

        params = sum(p.numel() for p in model.parameters())
        self.log(f"{len(data.train)} training and {len(data.val)} validation images, "
                 f"alphabet {len(data.alphabet)} symbols, input {data.preprocessing.height}x"
                 f"{data.preprocessing.width}, {config.model} with {params / 1e6:.2f}M parameters, "
                 f"{epochs} epochs on {self.device}"
                 + (f", {distributed.world_size} processes" if distributed.enabled else ""))
        started = time.monotonic() - elapsed

        def current_progress() -> float:
            """Share of the schedule done; with a time budget the processes agree on it."""
            fraction = step / total_steps
            if budget:
                fraction = distributed.most(max(fraction, (time.monotonic() - started) / budget))
            return fraction

        progress = current_progress()

        losses: list[float] = []  # since the last validation
        with self.reporter.task("training", total_steps, completed=step) as advance:
            stop = min(epochs, config.stop_epoch or epochs)
            while epoch < stop and progress < 1.0:
                data.next_epoch(epoch, prefetch=epoch + 1 < epochs)
                model.train()
                set_backbone_frozen(model, epoch < config.freeze_epochs)
                generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
                order = distributed.shard(torch.randperm(len(data.train), generator=generator))
                if distributed.rank:  # the other ranks augment their images their own way
                    generator = torch.Generator().manual_seed(
                        config.seed * 100_003 + epoch + 1_000_003 * distributed.rank)
                for start in range(0, len(order), batch_size):
                    index = order[start : start + batch_size]
                    if len(index) < 2:
                        continue  # batch norm needs two images
                    pixels = data.train_pixels[index]
                    images = torch.from_numpy(data.preprocessing.normalize(pixels))
                    targets = data.targets(index)
                    if augmentation is not None:
                        images = augmentation(images, generator, targets.centres)
                    for group in optimizer.param_groups:
                        group["lr"] = (one_cycle(progress, config.learning_rate)
                                       * group["lr_scale"])
                    outputs = network(images.to(self.device))
                    loss = model.loss(outputs, Targets(
                        targets.labels.to(self.device), targets.lengths,
                        None if targets.centres is None else targets.centres.to(self.device)))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                    optimizer.step()
                    losses.append(loss.item())
                    step += 1
                    advance(status=f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f}"
                                   + (f" val {history[-1]['val_accuracy']:.1%}"
                                      if history and "val_accuracy" in history[-1] else ""))
                    progress = current_progress()
                    if progress >= 1.0:
                        break
                epoch += 1
                if not distributed.is_main or (
                        epoch % validate_every and epoch < stop and progress < 1.0):
                    continue
                validation, tuned = self._validate(model, data)
                record = {"epoch": epoch, "step": step,
                          "train_loss": float(np.mean(losses)) if losses else None,
                          "lr": optimizer.param_groups[-1]["lr"],
                          "seconds": round(time.monotonic() - started, 2), **validation}
                history.append(record)
                losses = []
                # rewritten whole (atomically) from the history, which a resumed run restores:
                # an epoch cut off by a kill is written again once, never twice
                atomic_write_text(self.out_dir / METRICS_FILE,
                                  "".join(json.dumps(r) + "\n" for r in history))
                score = (record.get("val_accuracy", 0.0), -(record.get("val_loss") or 0.0))
                if not data.val or score > best_score:
                    best_score, decoding = score, tuned
                    save_model_file(self.out_dir / MODEL_FILE, state_to_numpy(model),
                                    self._metadata(data, model, {}, epoch, 0.0, decoding))
                self._save_checkpoint(checkpoint_path, model, optimizer, data, epoch, step,
                                      time.monotonic() - started, history, best_score, decoding)
        minutes = (time.monotonic() - started) / 60
        if not distributed.is_main:  # rank 0 writes the model
            return TrainResult(self.out_dir / MODEL_FILE, {}, epoch, minutes,
                               len(data.folder.bad))
        return self._finish(data, model, history, minutes)

    def _save_checkpoint(self, path: Path, model, optimizer, data, epoch, step, elapsed,
                         history, best_score, decoding) -> None:
        tensors = {f"model.{k}": v for k, v in state_to_numpy(model).items()}
        optimizer_tensors, groups = _optimizer_tensors(optimizer)
        optimizer_tensors[RNG_TENSOR] = torch.get_rng_state().numpy().copy()
        metadata = self._metadata(data, model, {}, epoch, elapsed / 60, decoding)
        metadata["checkpoint"] = {"epoch": epoch, "step": step, "elapsed": elapsed,
                                  "history": history, "best_score": list(best_score),
                                  "param_groups": groups}
        save_model_file(path, tensors | optimizer_tensors, metadata)

    def _finish(self, data: PreparedData, model, history, minutes) -> TrainResult:
        model_path = self.out_dir / MODEL_FILE
        best = load_model_file(model_path)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in best.tensors.items()})
        metrics, decoding = self._final_metrics(model, data)
        epoch = best.metadata["training"]["epochs"]
        save_model_file(model_path, best.tensors,
                        self._metadata(data, model, metrics, epoch, minutes, decoding))
        plot_curves(history, self.out_dir / CURVES_FILE)
        epochs_run = history[-1]["epoch"] if history else 0  # small sets skip validations
        atomic_write_text(self.out_dir / SUMMARY_FILE, json.dumps(
            {"model": str(model_path), "best_epoch": epoch, "epochs_run": epochs_run,
             "minutes": round(minutes, 2), **{f"val_{k}": v for k, v in metrics.items()}},
            indent=2) + "\n")
        return TrainResult(model_path, metrics, epochs_run, minutes, len(data.folder.bad),
                           epoch, history)


def copy_run(run_dir: Path, out_dir: Path) -> Path:
    """Copy a finished run's model, metrics, curves and summary into ``out_dir`` (one run
    chosen among several); returns the copied model's path."""
    for name in (MODEL_FILE, METRICS_FILE, CURVES_FILE, SUMMARY_FILE):
        atomic_write_bytes(out_dir / name, (run_dir / name).read_bytes())
    return out_dir / MODEL_FILE


def train(data_dir: str | Path, out_dir: str | Path, config: TrainConfig | None = None,
          log: Callable[[str], None] = print, show_progress: bool = True,
          split: tuple[list[Sample], list[Sample]] | None = None) -> TrainResult:
    """Train a model on a labelled folder; writes model.safetensors, metrics.jsonl, curves.png.

    ``split`` fixes the training and validation samples (of that folder) instead of
    ``config.val_split``: an audit trains on subsets against one validation set.
    """
    return Trainer(data_dir, out_dir, config or TrainConfig(), log, show_progress,
                   split).run()
