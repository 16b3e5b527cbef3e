"""One training run: training data in, a model file (plus metrics, curves, summary) out.

``Trainer.run`` reads top to bottom: where the run starts (fresh, from a checkpoint or
from another model), its data, its model and optimiser, the loop, and the final model.
The loop (:meth:`Trainer._loop`) is a few labelled stages per epoch: this epoch's images,
forward-backward-update per batch, then validation, the best epoch kept, a checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from captchalab.data import (
    LabelledFolder,
    Preprocessing,
    Sample,
    balance_folders,
    read_labelled_folders,
)
from captchalab.data import split_samples as split_folder
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.generators import load_scheme
from captchalab.models import Family, Targets, build, completed_config, family_class
from captchalab.reporting.curves import plot_curves
from captchalab.reporting.progress import ProgressReporter
from captchalab.runtime.constraints import Constraints, symbol_groups
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import Reading, get_decoder
from captchalab.runtime.model_file import (
    BASE_MODEL,
    ModelCard,
    ModelFile,
    ModelFileError,
    TrainingFacts,
    base_model_path,
    load_model_file,
    read_card,
    save_model_file,
)
from captchalab.runtime.torch_backend import resolve_device, state_to_numpy
from captchalab.training.augment import Augmentation
from captchalab.training.averaging import WeightAverage
from captchalab.training.checkpoint import (
    Checkpoint,
    LoopState,
    load_checkpoint,
    save_checkpoint,
    torch_state,
)
from captchalab.training.config import (
    FINE_TUNE_RATE,
    FINE_TUNE_STEPS,
    TARGET_STEPS,
    ConfigError,
    TrainConfig,
    from_base_rate,
)
from captchalab.training.data import FolderData, Images, PixelCache, StreamData, TrainingData
from captchalab.training.distillation import check_student, distillation_loss, load_teacher
from captchalab.training.distributed import Distributed, process_group
from captchalab.training.schedule import STARVED_SHARE, OneCycle, Progress, UntilConverged
from captchalab.training.transfer import (
    SIZE_KEYS,
    glyph_case_rows,
    transfer_weights,
)
from captchalab.training.validation import Validator

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
SUMMARY_FILE = "summary.json"
VALIDATE_EVERY_IMAGES = 512  # tiny training sets validate every few epochs, not every one
PLATEAU_CHAR_ACCURACY = 0.1  # below it, a string reader has not left its starting plateau
NEXT_CYCLE_SHARE = 0.5  # another cycle starts when this share of the last one's time is left
FROM_BASE = "the base model"  # started_from of a run from the packaged base model
GPU_HOST_THREADS = 2  # CPU threads of a GPU run's own process: the cores left draw images
SELECTION = ("the validated epoch with the highest validation accuracy; ties go to the "
             "lower validation loss")


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
    reading: Reading | None = None  # what the model reads (strings or sets of symbols)
    ended: str = ""  # "schedule", "converged", "budget" or "paused"
    steps: int = 0  # optimiser steps run
    steps_planned: int = 0
    warnings: list[str] = field(default_factory=list)  # an undertrained model, and why
    why: str = ""  # how the run ended, in words
    cycles: int = 1  # one-cycle schedules run
    notes: list[str] = field(default_factory=list)  # what a recipe (restarts, ...) found

    def describe(self) -> str:
        """The validation result in one line."""
        return self.reading.describe(self.metrics) if self.reading and self.metrics else ""


@dataclass(frozen=True)
class StreamTarget:
    """The real data a synthetic stream is drawn for: its symbols, lengths and input."""

    alphabet: object
    lengths: list[int]
    preprocessing: Preprocessing


@dataclass
class Run:
    """A run's parts once it is set up: what the loop reads and updates."""

    data: TrainingData
    model: Family
    network: torch.nn.Module  # the model, wrapped to average gradients under torchrun
    optimizer: torch.optim.Optimizer
    augmentation: Augmentation | None
    validator: Validator
    progress: Progress
    schedule: OneCycle | UntilConverged
    state: LoopState
    epochs: int
    total_steps: int  # the most steps one cycle may take
    planned_steps: int  # the default plan's steps (one one-cycle schedule's length)
    validate_every: int
    cycle_budget: float | None  # seconds the run may take once its first cycle is done
    best: dict[str, np.ndarray]  # the best epoch's weights
    decoding: DecodingSettings  # the best epoch's (tuned) decoding settings
    average: WeightAverage | None = None  # with ema: the weights validated and kept
    teacher: Family | None = None  # distilling: the frozen network whose outputs it learns

    @property
    def validated(self) -> Family:
        """The model validation reads and the file keeps: the weight average, if any."""
        return self.model if self.average is None else self.average.model


DataSource = str | Path | Sequence[str | Path]  # a labelled folder, or several read as one


def read_training_folder(data: DataSource, config: TrainConfig,
                         log: Callable[[str], None] = print,
                         keep_alphabet: str | None = None) -> LabelledFolder:
    """The labelled folder (or folders), its bad files refused (or skipped and counted with
    skip_bad); ``keep_alphabet`` (the model fine-tuned) is extended by new symbols."""
    folder = read_labelled_folders(data, config.alphabet, config.case_insensitive,
                                   keep_alphabet)
    folder.raise_if_bad(config.skip_bad)
    if folder.bad:
        log(f"skipped {len(folder.bad)} bad file(s) of {len(folder.bad) + len(folder.samples)}")
    return folder


def validate_every(train_count: int) -> int:
    """Epochs between validations: every epoch, or every few for a tiny training set."""
    return max(1, -(-VALIDATE_EVERY_IMAGES // max(1, train_count)))


def planned_steps(config: TrainConfig, train_count: int) -> tuple[int, int]:
    """``(epochs, optimiser steps)`` of the schedule for ``train_count`` training images:
    ``epochs``, or about the family's share of TARGET_STEPS (15 to 300 epochs)."""
    steps_per_epoch = max(1, -(-train_count // config.batch_size))
    target = (FINE_TUNE_STEPS if config.fine_tune else
              TARGET_STEPS * family_class(config.model).schedule_scale)
    epochs = config.epochs or int(np.clip(round(target / steps_per_epoch),
                                          1 if config.fine_tune else 15, 300))
    return epochs, epochs * steps_per_epoch


def parameter_groups(model: Family, backbone_lr: float) -> list[dict]:
    """The backbone's parameters and the rest, each with its learning-rate factor."""
    backbone = [p for name, p in model.named_parameters() if name.startswith("backbone.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
    return [{"params": backbone, "lr_scale": backbone_lr}, {"params": rest, "lr_scale": 1.0}]


def set_backbone_frozen(model: Family, frozen: bool) -> None:
    for name, parameter in model.named_parameters():
        if name.startswith("backbone."):
            parameter.requires_grad_(not frozen)


def device_name(device: torch.device) -> str:
    """``cpu``, or the GPU's name (``cuda:0 (NVIDIA H200)``): the card says what trained it."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def stale_cycles(state: LoopState, accuracy: float) -> int:
    """Cycles in a row, up to the one that just ended, that left the best validation
    ``accuracy`` where it was before them."""
    return state.stale_cycles + 1 if accuracy <= state.cycle_best_before else 0


def chain_verdict(state: LoopState, accuracy: float, elapsed: float, *, limit: int,
                  patience: int, budget: float | None, validating: bool,
                  planned_steps: int) -> tuple[str, str]:
    """Whether a run chains another one-cycle after the cycle that just ran its schedule:
    ``("", "")`` to go on, else how the run ended and why, in words. It goes on while the
    most cycles allow, validation is below 100%, fewer than ``patience`` cycles in a row
    left the best validation ``accuracy`` where it was, and at least half the last cycle's
    time is left of the ``budget`` (seconds; ``elapsed`` is the run's time so far)."""
    stale = stale_cycles(state, accuracy)
    if state.cycle >= limit:
        return "schedule", (f"{planned_steps} planned steps" if limit == 1 else
                            f"{limit} cycles, the most it chains")
    if not validating:
        return "schedule", "no validation images to tell whether another cycle helps"
    if accuracy >= 1.0:
        return "converged", "validation reads every image"
    if stale >= patience:
        cycles = (f"cycle {state.cycle}" if stale == 1 else
                  f"cycles {state.cycle - stale + 1} to {state.cycle}")
        return "converged", (f"{cycles} did not improve validation accuracy beyond "
                             f"{accuracy:.1%}")
    if budget is not None and budget - elapsed < NEXT_CYCLE_SHARE * (
            elapsed - state.cycle_start_elapsed):
        return "budget", (f"the {budget / 60:.3g}-minute budget leaves no room for cycle "
                          f"{state.cycle + 1}")
    return "", ""


class Trainer:
    """One training run; ``run()`` returns the best model by validation accuracy.

    The data is a labelled folder (``data_dir``, split by ``config.val_split`` unless
    ``split`` gives the samples), a synthetic scheme (``config.scheme``, drawn for
    ``target`` when pretraining), or already loaded (``data``: shared by the runs of
    staged restarts and self-training, which decode the folder once).
    """

    def __init__(self, data_dir: DataSource | None, out_dir: str | Path, config: TrainConfig,
                 log: Callable[[str], None] = print, show_progress: bool = True,
                 split: tuple[list[Sample], list[Sample]] | None = None,
                 target: StreamTarget | None = None, data: TrainingData | None = None) -> None:
        self.data_dir = data_dir
        self.out_dir = Path(out_dir)
        self.split, self.target, self.data = split, target, data
        self.distributed = Distributed.from_environment()
        main = self.distributed.is_main  # the other processes of a torchrun stay quiet
        self.config, self.log = config, log if main else (lambda _: None)
        self.reporter = ProgressReporter(enabled=show_progress and main)
        self.device = self.distributed.device(resolve_device(config.device))
        self.started_from = ""  # the model whose weights the run started from, in words
        self.from_base = False  # starting from the base model: its weights, this run's settings

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    # -- the run, top to bottom ------------------------------------------------------------
    def run(self) -> TrainResult:
        config = self.config
        torch.manual_seed(config.seed)
        if self.distributed.enabled and config.freeze_epochs:
            raise ConfigError("`freeze_epochs` is not available under torchrun: start the run "
                              "in one process")
        # where the run starts: a checkpoint to resume, a model to start from, or nothing
        self.out_dir.mkdir(parents=True, exist_ok=True)
        existing = self.out_dir / MODEL_FILE
        if existing.exists() and not (config.resume or config.overwrite):
            raise ModelFileError(f"{existing}: already exists; pass `resume` to continue that "
                                 "run or `overwrite` to replace it")
        resumed = self._checkpoint() if config.resume else None
        if resumed is not None:
            self.started_from = resumed.card.training.started_from
        if resumed is not None and resumed.state.ended in ("schedule", "budget", "converged"):
            return self._already_ended(resumed)
        source = load_model_file(config.init) if config.init and resumed is None else None
        teacher = load_model_file(config.teacher) if config.teacher else None
        # the data: given, a labelled folder, or a synthetic stream; a model to continue
        # keeps its preprocessing and alphabet, the general base model gives only weights
        keeps_input = source if source is not None and config.init != BASE_MODEL else None
        start = resumed or keeps_input or teacher
        data = self.data or self._load_data(
            start.card.preprocessing if start else
            self.target.preprocessing if self.target else None,
            start.card.alphabet if start else None)
        try:
            if resumed is not None and resumed.card.data.fingerprint != data.facts.fingerprint:
                raise ModelFileError(f"{self.checkpoint_path}: was trained on different data; "
                                     "start a new run without `resume`")
            if resumed is None and source is None and starts_from_base(config):
                source = load_model_file(BASE_MODEL)
            self.from_base = source is not None and config.init in (None, BASE_MODEL)
            with process_group(self.distributed, self.device), host_threads(self.device):
                run = self._set_up(data, resumed, source, teacher)
                self._loop(run)
                if not self.distributed.is_main:  # rank 0 writes the model
                    self.distributed.barrier()
                    return TrainResult(self.out_dir / MODEL_FILE, {}, run.state.epoch,
                                       run.progress.elapsed / 60, data.skipped)
                result = self._finish(run)
                self.distributed.barrier()  # every rank ends after rank 0 has written
                return result
        finally:
            if self.data is None:
                data.close()

    def _checkpoint(self) -> Checkpoint:
        if not self.checkpoint_path.is_file():
            raise ModelFileError(f"{self.checkpoint_path}: no checkpoint to resume from")
        return load_checkpoint(self.checkpoint_path)

    def _already_ended(self, resumed: Checkpoint) -> TrainResult:
        """A run that finished its schedule has nothing left to resume: say so, and why."""
        state, card = resumed.state, read_card(self.out_dir / MODEL_FILE)
        ran = (f"{state.cycle} cycles of the planned steps" if state.cycle > 1 else
               f"{card.training.schedule_share:.0%} of the planned steps")
        why = {"schedule": "it ran its whole schedule", "converged": "it converged",
               "budget": f"its time budget ran out after {ran}, with the learning rate "
                         "annealed"}[state.ended]
        why += f": {state.why}" if state.why else ""
        self.log(f"nothing to resume: this run ended at epoch {state.epoch} ({why}). To train "
                 "longer, start a new run (`overwrite`) with more `epochs` or a larger "
                 f"`max_minutes`, or fine-tune this model with `init` {self.out_dir / MODEL_FILE}")
        return TrainResult(self.out_dir / MODEL_FILE, card.metrics, state.epoch,
                           state.elapsed / 60, card.data.skipped, state.best_epoch,
                           state.history, get_decoder(card.decoder).reading, state.ended,
                           state.step, card.training.steps_planned)

    def _rate_share(self, train_count: int) -> float:
        """The share of ``learning_rate`` the schedule peaks at: lower for a fine-tune of a
        trained model, and for a run from the base model with few images."""
        if self.config.fine_tune:
            return FINE_TUNE_RATE
        return from_base_rate(train_count) if self.started_from == FROM_BASE else 1.0

    def _start_from(self, model: Family, source: ModelFile, data: TrainingData) -> Family:
        """``model`` with ``source``'s weights; without ``init`` (the base model by default)
        a base that does not fit this data leaves the model fresh, and says why."""
        init = self.config.init
        name = FROM_BASE if init in (None, BASE_MODEL) else init
        try:
            train_images = data.labelled_images()
            rows_from = {} if train_images is None else glyph_case_rows(
                model, source, data.alphabet, train_images.pixels, train_images.labels,
                data.preprocessing)
            moved = transfer_weights(model, source, data.alphabet, name, rows_from)
        except ModelFileError as error:  # other layer sizes or settings (an LSTM, a width)
            if init is not None:
                raise
            self.log(f"training from scratch: the base model does not fit this run "
                     f"({str(error).removeprefix(name + ': ')})")
            return model
        self.started_from = name
        self.log(f"starting from {name}{' (`--from-scratch` to opt out)' if init is None else ''}"
                 f": {len(moved.shared)} symbols carried over"
                 + (f", {len(moved.new)} new ({moved.new})" if moved.new else "")
                 + (f"; {moved.from_other_case} from their other case, which the images draw"
                    if moved.from_other_case else ""))
        return model

    def _load_data(self, preprocessing: Preprocessing | None,
                   alphabet: str | None = None) -> TrainingData:
        """The labelled folder's images, or a synthetic scheme's stream with ``scheme``."""
        config, target = self.config, self.target
        family = family_class(config.model)
        if config.scheme:
            return StreamData(load_scheme(config.scheme), config, self.reporter, preprocessing,
                              family.needs_centres, target.alphabet if target else None,
                              target.lengths if target else None)
        if self.data_dir is None:
            raise ConfigError("nothing to train on: give a folder of labelled images or a "
                              "synthetic `scheme`")
        folder = read_training_folder(self.data_dir, config, self.log, alphabet)
        train, val = self.split or split_folder(folder.samples, config.val_split, config.seed)
        train = balanced_folders(train, self.data_dir, config, self.log)
        return FolderData.load(folder, train, val, config, self.reporter, preprocessing,
                               family.needs_centres, PixelCache())

    def _set_up(self, data: TrainingData, resumed: Checkpoint | None,
                source: ModelFile | None, teacher: ModelFile | None = None) -> Run:
        """The model (fresh, resumed or from ``source``), its ``teacher`` if distilling,
        optimiser, schedule and state."""
        config = self.config
        family = family_class(config.model)
        if resumed is not None:
            model = build(resumed.card.family, **resumed.card.config)
        else:
            options = family.network_options(config.model_options)
            inherits = source is not None and not self.from_base
            if inherits:  # e.g. crnn's sequence: the source's, unless given
                theirs = completed_config(source.card.family, source.card.config)
                options = {**{o.name: theirs[o.name] for o in family.options
                              if o.inherited and o.name in theirs}, **options}
            if config.width_multiplier != 1.0:
                options["width_multiplier"] = config.width_multiplier
            settings = family.configure(data.shape(), **options)
            if inherits:  # the source's layer sizes, this data's alphabet and length
                inherited = {k: v for k, v in source.card.config.items() if k not in SIZE_KEYS}
                settings = {**inherited, **settings}
            model = build(config.model, **settings)
        if source is not None:
            model = self._start_from(model, source, data)
        model = model.to(self.device)
        teacher_network = None
        if teacher is not None:
            teacher_network = load_teacher(teacher, config.teacher, self.device)
            check_student(model, teacher_network, data.preprocessing.height,
                          data.preprocessing.width)
            self.log(f"distilling {config.teacher} (weight {config.distill_weight:g})")
        optimizer = torch.optim.AdamW(parameter_groups(model, config.backbone_lr),
                                      lr=config.learning_rate, weight_decay=config.weight_decay)
        symbol_groups(data.alphabet, Constraints.from_dict(config.constraints))  # readable?
        epochs, total_steps = planned_steps(config, data.train_count)
        plan = total_steps
        peak = config.learning_rate * self._rate_share(data.train_count)
        if config.schedule == "until-converged":
            epoch_steps = total_steps // epochs
            epochs = max(epochs, math.ceil(config.stretch * epochs))
            total_steps = epochs * epoch_steps
            schedule = UntilConverged(peak, round(0.15 * plan), plan // 2, total_steps,
                                      epoch_steps, epoch_steps * validate_every(data.train_count))
        else:
            schedule = OneCycle(peak)
        lengths = data.label_lengths
        decoding = DecodingSettings(config.decoding, config.beam_width,
                                    lengths[0] if len(lengths) == 1 else None)
        state = LoopState()
        budget = config.max_minutes * 60 if config.max_minutes else None
        cycle_budget = config.cycle_budget(data.train_count)
        progress = self._cycle_progress(total_steps, state, cycle_budget)
        if resumed is not None:
            model.load_state_dict(torch_state(resumed.model))
            resumed.restore_optimizer(optimizer)
            state = resumed.state
            if resumed.rng is not None:  # dropout continues as if never paused
                torch.set_rng_state(torch.from_numpy(np.array(resumed.rng)))
            progress = self._cycle_progress(total_steps, state, cycle_budget)
            if budget is not None and progress.budget_left <= 0:
                raise ConfigError(
                    f"the `max_minutes` budget of {config.max_minutes:g} min is spent: the run "
                    f"has trained {state.elapsed / 60:.1f} min; give a larger `max_minutes` to "
                    f"finish the remaining {1 - state.share:.0%} of its schedule")
            self.log(f"resuming at epoch {state.epoch + 1} of {state.cycle_start_epoch + epochs}"
                     f" ({state.share:.0%} of the schedule done"
                     + (f", cycle {state.cycle})" if state.cycle > 1 else ")"))
        if self.distributed.rank:  # the same start as rank 0, then its own dropout
            torch.manual_seed(config.seed * 1_000 + self.distributed.rank + 7_919 * state.epoch)
        average = WeightAverage(model, config.ema) if config.ema else None
        if average is not None and resumed is not None and resumed.average:
            average.model.load_state_dict(torch_state(resumed.average))
            average.updates = state.average_updates
        params = sum(p.numel() for p in model.parameters())
        chain = ""
        if config.cycle_limit > 1:
            within = f", within {cycle_budget / 60:.3g} min" if cycle_budget and not budget else ""
            chain = f", then more cycles while they help (up to {config.cycle_limit}{within})"
        self.log(f"{data.facts.train_count} training and {len(data.validation)} validation images, "
                 f"alphabet {len(data.alphabet)} symbols, input {data.preprocessing.height}x"
                 f"{data.preprocessing.width}"
                 + (" (its height from the data)" if config.height is None and resumed is None
                    and source is None and teacher is None and self.target is None else "")
                 + f", {config.model} with {params / 1e6:.2f}M "
                 f"parameters, {epochs} epochs ({total_steps} steps)"
                 + chain + f" on {self.device}"
                 + (f", {config.max_minutes:g} min budget" if budget else "")
                 + (f", {self.distributed.world_size} processes"
                    if self.distributed.enabled else ""))
        augmentation = None
        if config.augment:
            augmentation = (Augmentation.captcha(config.augment_strength)
                            if config.captcha_augmentation else Augmentation())
        return Run(data, model, self.distributed.wrap(model, self.device), optimizer,
                   augmentation,
                   Validator(data, model.decoder, decoding, self.device), progress, schedule,
                   state, epochs, total_steps, plan,
                   validate_every=validate_every(data.train_count), cycle_budget=cycle_budget,
                   best=dict(resumed.best) if resumed else state_to_numpy(model),
                   decoding=resumed.card.decoding if resumed else decoding, average=average,
                   teacher=teacher_network)

    # -- the loop -------------------------------------------------------------------------
    def _loop(self, run: Run) -> None:
        """Train cycle after cycle (one, unless the run chains them) until the schedule, the
        time budget, convergence or a pause ends the run."""
        state = run.state
        while True:
            self._cycle(run)
            state.ended = self._ending(run)
            if state.ended != "schedule" or not self._next_cycle(run):
                break
        state.elapsed = run.progress.elapsed
        self._say_why(run)

    def _cycle(self, run: Run) -> None:
        """One schedule, epoch after epoch, until it ends, the budget ends it or a pause."""
        config, state, distributed = self.config, run.state, self.distributed
        end = state.cycle_start_epoch + run.epochs
        stop = min(end, config.stop_epoch or end)
        batch_size = distributed.batch_size(config.batch_size)
        losses: list[float] = []  # since the last validation
        task = "training" if state.cycle == 1 else f"training, cycle {state.cycle}"
        with self.reporter.task(task, run.total_steps, state.share * run.total_steps,
                                percent=True) as advance:
            while state.epoch < stop and not run.schedule.finished(state):
                # this epoch's images, in this epoch's order
                images = run.data.training(state.epoch, prefetch=state.epoch + 1 < end)
                run.model.train()
                set_backbone_frozen(run.model, state.epoch < config.freeze_epochs)
                order, generator = self._epoch_order(len(images), state.epoch)
                # forward, backward, update
                for start in range(0, len(order), batch_size):
                    index = order[start : start + batch_size]
                    if len(index) < 2:
                        continue  # batch norm needs two images
                    losses.append(self._step(run, images, index, generator))
                    state.step += 1
                    state.share = self._share(run)
                    advance(to=min(state.share, 1.0) * run.total_steps,
                            status=self._status(run, losses[-1]))
                    if run.schedule.finished(state):
                        break
                state.epoch += 1
                # validate, keep the best, decide on the schedule, checkpoint
                if (state.epoch % run.validate_every == 0 or state.epoch >= stop
                        or run.schedule.finished(state)):
                    if distributed.is_main:
                        self._validate(run, losses)
                        losses = []
                    self._agree_on_schedule(run)

    def _next_cycle(self, run: Run) -> bool:
        """After a cycle that ran its schedule: start another (True) as `chain_verdict`
        allows; otherwise record why the run ends (False). Another cycle restarts the
        one-cycle schedule from the last weights (a warm restart); the kept model stays the
        best validated epoch of all."""
        state, config = run.state, self.config
        accuracy, elapsed = state.best_score[0], run.progress.elapsed
        ended, why = chain_verdict(state, accuracy, elapsed, limit=config.cycle_limit,
                                   patience=config.cycle_patience, budget=run.cycle_budget,
                                   validating=run.validator.enabled,
                                   planned_steps=run.planned_steps)
        go = self.distributed.from_main([int(not ended)])[0] == 1  # rank 0 validated
        if not go:
            state.ended, state.why = ended or "schedule", why
            return False
        self.log(f"cycle {state.cycle} ended at epoch {state.epoch}, best validation "
                 f"{accuracy:.1%}: cycle {state.cycle + 1} (of at most {config.cycle_limit}) "
                 "restarts the schedule from the last weights")
        state.stale_cycles = stale_cycles(state, accuracy)
        state.cycle += 1
        state.cycle_start_step, state.cycle_start_epoch = state.step, state.epoch
        state.cycle_start_elapsed, state.cycle_best_before = elapsed, accuracy
        state.share, state.ended = 0.0, ""
        run.progress = self._cycle_progress(run.total_steps, state, run.cycle_budget)
        return True

    def _cycle_progress(self, total_steps: int, state: LoopState,
                        cycle_budget: float | None) -> Progress:
        """The progress of the current cycle (from where a resumed run stopped in it): the
        first within `max_minutes`, if given; later ones within ``cycle_budget``."""
        config = self.config
        if state.cycle == 1:
            budget = config.max_minutes * 60 if config.max_minutes else None
        else:
            budget = cycle_budget
        return Progress(total_steps, budget, state.step - state.cycle_start_step, state.share,
                        state.elapsed)

    def _say_why(self, run: Run) -> None:
        """Record and log how the run ended, in words (`stopped: converged at epoch N`)."""
        state = run.state
        if state.ended == "paused":
            return
        if not state.why:
            if state.ended == "converged":  # the until-converged schedule
                state.why = (f"validation stopped improving at step {state.cooldown_start}, "
                             "then the rate cooled down")
            elif state.ended == "budget":
                done = (state.step - state.cycle_start_step) / run.total_steps
                budget = (run.progress.budget or 0) / 60
                state.why = (f"the {budget:.3g}-minute budget ended cycle {state.cycle} at "
                             f"{done:.0%} of its planned steps" if state.cycle > 1 else
                             f"the {budget:.3g}-minute budget ended the run at {done:.0%} of "
                             "its planned steps")
            else:
                state.why = f"{run.planned_steps} planned steps"
        said = {"converged": "converged", "budget": "the time budget ended the run",
                "schedule": "the schedule ended"}[state.ended]
        cycles = f", {state.cycle} cycles" if state.cycle > 1 else ""
        self.log(f"stopped: {said} at epoch {state.epoch} ({state.why}{cycles}); the model "
                 f"is epoch {state.best_epoch}'s")

    def _agree_on_schedule(self, run: Run) -> None:
        """Under torchrun, every rank takes rank 0's decision to start the cooldown."""
        if not self.distributed.enabled or not isinstance(run.schedule, UntilConverged):
            return
        state = run.state
        start, steps = self.distributed.from_main(
            [-1 if state.cooldown_start is None else state.cooldown_start, state.cooldown_steps])
        state.cooldown_start, state.cooldown_steps = (None if start < 0 else start), steps

    def _ending(self, run: Run) -> str:
        """Why the loop ended: the cooldown's trigger, the whole schedule, the budget, a pause."""
        state = run.state
        if (state.cooldown_start is not None
                and state.step >= state.cooldown_start + state.cooldown_steps):
            return state.trigger
        if state.epoch >= state.cycle_start_epoch + run.epochs:
            return "schedule"
        return "budget" if state.share >= 1.0 else "paused"

    def _epoch_order(self, count: int, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
        """This process's share of the epoch's shuffled order, and its augmentation draws."""
        seed, rank = self.config.seed, self.distributed.rank
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = self.distributed.shard(torch.randperm(count, generator=generator))
        if rank:  # the other ranks augment their images their own way
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch + 1_000_003 * rank)
        return order, generator

    def _step(self, run: Run, images: Images, index: torch.Tensor,
              generator: torch.Generator) -> float:
        """One optimiser step on a batch; its loss."""
        batch = torch.from_numpy(run.data.preprocessing.normalize(images.pixels[index]))
        batch = batch.to(self.device)  # augmented where the network runs (a GPU's time)
        targets = images.targets_of(index)
        if run.augmentation is not None:
            batch = run.augmentation(batch, generator, targets.centres)
        rate = run.schedule.rate(run.state)
        for group in run.optimizer.param_groups:
            group["lr"] = rate * group["lr_scale"]
        outputs = run.network(batch)
        loss = run.model.loss(outputs, Targets(
            targets.labels.to(self.device), targets.lengths,
            None if targets.centres is None else targets.centres.to(self.device)))
        if run.teacher is not None:
            with torch.no_grad():
                taught = run.teacher(batch)
            loss = loss + self.config.distill_weight * distillation_loss(outputs, taught)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 5.0)
        run.optimizer.step()
        if run.average is not None:
            run.average.update(run.model)
        return loss.item()

    def _share(self, run: Run) -> float:
        """The schedule's share done; with a time budget the processes agree on it."""
        share = run.progress.share(run.state.step - run.state.cycle_start_step)
        return self.distributed.most(share) if run.progress.budget else share

    def _status(self, run: Run, loss: float) -> str:
        state, history = run.state, run.state.history
        shown = (f" val {history[-1]['val_accuracy']:.1%}"
                 if history and "val_accuracy" in history[-1] else "")
        cycle = f"cycle {state.cycle} " if state.cycle > 1 else ""
        return (f"{cycle}epoch {state.epoch + 1}/{state.cycle_start_epoch + run.epochs} step "
                f"{state.step - state.cycle_start_step}/{run.total_steps} loss {loss:.3f}{shown}")

    def _validate(self, run: Run, losses: list[float]) -> None:
        """Validate, write the curves' record, keep the epoch if it is the best, checkpoint."""
        state = run.state
        validation, tuned = run.validator.epoch(run.validated)
        state.history.append({
            "epoch": state.epoch, "step": state.step,
            "train_loss": float(np.mean(losses)) if losses else None,
            "lr": run.optimizer.param_groups[-1]["lr"],
            "seconds": round(run.progress.elapsed, 2), **validation})
        # rewritten whole (atomically) from the history, which a resumed run restores:
        # an epoch cut off by a kill is written again once, never twice
        atomic_write_text(self.out_dir / METRICS_FILE,
                          "".join(json.dumps(r) + "\n" for r in state.history))
        score = (validation.get("val_accuracy", 0.0), -(validation.get("val_loss") or 0.0))
        time_left = None if run.progress.budget is None else (
            run.progress.budget - run.progress.elapsed)
        run.schedule.update(state, score[0], -score[1],
                            run.progress.elapsed / max(1, state.step), time_left)
        if not run.validator.enabled or score > state.best_score:
            state.best_score, state.best_epoch, run.decoding = score, state.epoch, tuned
            run.best = state_to_numpy(run.validated)
            metrics = {k[len("val_"):]: v for k, v in validation.items()
                       if k.startswith("val_") and k not in ("val_loss", "val_accuracy")}
            save_model_file(self.out_dir / MODEL_FILE, run.best,
                            self._card(run, metrics, run.decoding))  # usable while training
        state.elapsed = run.progress.elapsed
        self._save_checkpoint(run, run.decoding)
        if self.config.log_epochs:  # long runs in the background: one line per validation
            loss = state.history[-1]["train_loss"]
            self.log(f"epoch {state.epoch}: step {state.step}, "
                     f"{state.step * self.config.batch_size} images seen, train loss "
                     + (f"{loss:.3f}" if loss is not None else "-")
                     + f", validation {score[0]:.1%}, {state.elapsed / 60:.1f} min")

    def _save_checkpoint(self, run: Run, decoding: DecodingSettings) -> None:
        if run.average is not None:
            run.state.average_updates = run.average.updates
        save_checkpoint(self.checkpoint_path, run.model, run.best, run.optimizer,
                        self._card(run, {}, decoding), run.state,
                        None if run.average is None else run.average.model)

    # -- the final model ------------------------------------------------------------------
    def _finish(self, run: Run) -> TrainResult:
        """The best epoch read with the model file's decoder (tuned), saved once, with the
        curves, the summary and a warning when the run was too short to trust."""
        state = run.state
        self._save_checkpoint(run, decoding=run.decoding)  # records how the run ended
        best = build(run.model.family, **run.model.config).to(self.device)
        best.load_state_dict(torch_state(run.best))
        metrics, decoding = run.validator.final(best)
        model_path = save_model_file(self.out_dir / MODEL_FILE, run.best,
                                     self._card(run, metrics, decoding))
        plot_curves(state.history, self.out_dir / CURVES_FILE)
        reading = get_decoder(run.model.decoder).reading
        warnings = self._warnings(run, metrics, reading)
        for warning in warnings:
            self.log(f"warning: {warning}")
        epochs_run = state.history[-1]["epoch"] if state.history else 0
        minutes = state.elapsed / 60
        atomic_write_text(self.out_dir / SUMMARY_FILE, json.dumps({
            "model": str(model_path), "best_epoch": state.best_epoch, "epochs_run": epochs_run,
            "minutes": round(minutes, 2),
            "schedule": {"kind": run.schedule.name, "ended": state.ended, "why": state.why,
                         "peak_learning_rate": run.schedule.peak,
                         "cycles": state.cycle, "cycles_at_most": self.config.cycle_limit,
                         "steps_run": state.step, "steps_planned": run.planned_steps,
                         "steps_at_most": run.total_steps * self.config.cycle_limit,
                         "share": round(state.step / run.planned_steps, 4),
                         "budget_minutes": (None if run.cycle_budget is None else
                                            round(run.cycle_budget / 60, 2))},
            "selection": SELECTION, "warnings": warnings,
            **{f"val_{k}": v for k, v in metrics.items()}}, indent=2) + "\n")
        return TrainResult(model_path, metrics, epochs_run, minutes, run.data.skipped,
                           state.best_epoch, state.history, reading, state.ended, state.step,
                           run.planned_steps, warnings, why=state.why, cycles=state.cycle)

    def _warnings(self, run: Run, metrics: dict, reading: Reading) -> list[str]:
        """Why a model may be undertrained: a budget that ended most of the schedule early,
        or a string reader that never left its starting plateau."""
        state, warnings = run.state, []
        share = state.step / run.planned_steps
        if state.ended == "budget" and share < STARVED_SHARE:
            needed = state.elapsed / 60 / max(share, 1e-9)
            fitting = max(1, int(run.epochs * run.planned_steps / run.total_steps * share))
            warnings.append(
                f"the {self.config.max_minutes:g}-minute budget ended the run after "
                f"{state.step} of {run.planned_steps} planned steps ({share:.0%} of the "
                f"schedule): the model is undertrained. Give it about {needed:.0f} minutes at "
                f"this speed (`max_minutes`), or plan fewer steps (`epochs` {fitting})")
        if reading.ordered and metrics and metrics["char_accuracy"] < PLATEAU_CHAR_ACCURACY:
            warnings.append(
                f"validation reads {metrics['sequence_accuracy']:.1%} of captchas and "
                f"{metrics['char_accuracy']:.1%} of characters: training never left its "
                "starting plateau (the model outputs almost nothing yet). Train longer "
                "(`max_minutes`, `epochs`) or on more labelled images")
        return warnings

    def _card(self, run: Run, metrics: dict, decoding: DecodingSettings) -> ModelCard:
        data, model, state = run.data, run.model, run.state
        return ModelCard(
            family=model.family, config=model.config, decoder=model.decoder,
            alphabet=data.alphabet.symbols, preprocessing=data.preprocessing,
            label_lengths=tuple(data.label_lengths), decoding=decoding, metrics=metrics,
            data=data.facts,
            training=TrainingFacts(
                best_epoch=state.best_epoch, epochs_run=state.epoch, steps_run=state.step,
                steps_planned=run.planned_steps, minutes=round(run.progress.elapsed / 60, 2),
                ended=state.ended, why=state.why, cycles=state.cycle, selection=SELECTION,
                started_from=self.started_from,
                device=device_name(self.device),
                config=asdict(self.config)),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            constraints=Constraints.from_dict(self.config.constraints),
            reads="expression" if data.expressions else "text")


def balanced_folders(train: list[Sample], data_dir: str | Path | Sequence[str | Path] | None,
                     config: TrainConfig, log: Callable[[str], None]) -> list[Sample]:
    """With several folders and ``balance_folders`` (on when fine-tuning), each folder's
    training images repeated so that a few new labels weigh as much as the original set."""
    folders = [] if isinstance(data_dir, (str, Path)) else list(data_dir or [])
    balance = config.balance_folders
    if len(folders) < 2 or not (config.fine_tune if balance is None else balance):
        return train
    train, repeats = balance_folders(train, folders)
    if any(n > 1 for n in repeats):
        log("each folder weighs the same: " + ", ".join(
            f"{Path(folder).name} x{n}" for folder, n in zip(folders, repeats)))
    return train


@contextmanager
def host_threads(device: torch.device) -> Iterator[None]:
    """On a GPU, the run's process keeps a few CPU threads: idle intra-op threads spin on
    the cores that the processes drawing synthetic images need."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, GPU_HOST_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def starts_from_base(config: TrainConfig) -> bool:
    """Whether a fresh run starts from the packaged base model: a crnn run with no other
    start (``init``, ``teacher``, a synthetic ``scheme``) unless ``from_scratch``."""
    return (config.model == "crnn" and not (config.from_scratch or config.init
                                            or config.teacher or config.scheme)
            and base_model_path().is_file())


def copy_run(run_dir: Path, out_dir: Path) -> Path:
    """Copy a finished run's model, metrics, curves and summary into ``out_dir`` (one run
    chosen among several); returns the copied model's path."""
    for name in (MODEL_FILE, METRICS_FILE, CURVES_FILE, SUMMARY_FILE):
        atomic_write_bytes(out_dir / name, (run_dir / name).read_bytes())
    return out_dir / MODEL_FILE
