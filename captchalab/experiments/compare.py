"""``compare``: train several families on the same split with the same budget, side by side.

Writes ``compare.json`` (every figure), ``compare.md`` (a table) and ``compare.png`` (bars).
A family that cannot train on the data (say multihead on labels of mixed length) is reported
with its reason instead of stopping the others.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from captchalab.data import DatasetError, read_labelled_folder, split_samples
from captchalab.data.annotations import ANNOTATIONS_FILE
from captchalab.data.centres import annotate_centres
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.models import family_class, list_families, options_for
from captchalab.reporting.charts import label_bars, machine, now, png_bytes, pyplot
from captchalab.runtime.model_file import ModelFileError
from captchalab.runtime.recognizer import Recognizer
from captchalab.training.config import TrainConfig
from captchalab.training.distributed import refuse_under_torchrun
from captchalab.training.recipes import train

SPEED_IMAGES = 256  # images read (repeating the validation set) to time each model


@dataclass
class Entry:
    """One family's result; ``error`` is set (and the figures are not) when it failed."""

    model: str
    accuracy: float | None = None  # whole captcha, or exact set for multilabel
    accuracy_kind: str = "sequence"
    char_accuracy: float | None = None  # per character, or per label for multilabel
    train_minutes: float | None = None
    parameters: int | None = None
    file_bytes: int | None = None
    images_per_second: float | None = None
    epochs: int | None = None
    best_epoch: int | None = None  # the epoch the model file keeps (best on validation)
    last_accuracy: float | None = None  # the final epoch's, as logged during training
    model_path: str | None = None
    note: str = ""
    warnings: list[str] = field(default_factory=list)  # an undertrained run, and why
    error: str | None = None


def measure_speed(recognizer: Recognizer, paths: Sequence[Path], batch_size: int = 64) -> float:
    """CPU images per second through the whole pipeline: file -> preprocessing -> text."""
    if not paths:
        return 0.0
    items = [paths[i % len(paths)] for i in range(max(SPEED_IMAGES, len(paths)))]
    recognizer.predict(items[:batch_size], batch_size)  # warm-up
    started = time.perf_counter()
    recognizer.predict(items, batch_size)
    return len(items) / (time.perf_counter() - started)


def _centres_for_heatmap(data_dir: Path, out_dir: Path, entries: dict[str, Entry],
                         config: TrainConfig) -> tuple[str | None, str]:
    """The annotations the heatmap trains on: given, in the folder, or derived from crnn."""
    if config.centres:
        return config.centres, "centres from the given file"
    if (data_dir / ANNOTATIONS_FILE).is_file():
        return None, f"centres from {ANNOTATIONS_FILE}"
    crnn = entries.get("crnn")
    if crnn is None or crnn.model_path is None:
        raise DatasetError(f"{data_dir}: no {ANNOTATIONS_FILE} and no trained crnn to derive "
                           "character centres from")
    result = annotate_centres(Recognizer.load(crnn.model_path), data_dir,
                              out_dir / "centres.jsonl", overwrite=True,
                              skip_bad=config.skip_bad)
    return str(result.path), "centres derived from the crnn's CTC alignment"


def compare(data_dir: str | Path, out_dir: str | Path, models: Sequence[str] | None = None,
            config: TrainConfig | None = None, log: Callable[[str], None] = print,
            show_progress: bool = True) -> list[Entry]:
    """Train each of ``models`` (default: every registered family) on ``data_dir`` with
    ``config`` (same split, same budget, every family from fresh weights)."""
    refuse_under_torchrun("compare")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    config = config or TrainConfig()
    models = list(models or list_families())
    for name in models:
        family_class(name)  # unknown names fail before any training
    order = list(dict.fromkeys(models))
    needs_crnn = any(family_class(m).needs_centres for m in order) and not (
        config.centres or (data_dir / ANNOTATIONS_FILE).is_file())
    if needs_crnn:  # the crnn's alignment gives the heatmap its centres, so it trains first
        order = ["crnn", *[m for m in order if m != "crnn"]]
    folder = read_labelled_folder(data_dir, case_insensitive=config.case_insensitive)
    _, val = split_samples(folder.samples, config.val_split, config.seed)
    entries: dict[str, Entry] = {}
    for name in order:
        log(f"== {name} ==")
        entry = Entry(name)
        entries[name] = entry
        try:
            options = options_for(name, config.model_options)
            if family_class(name).needs_centres:
                centres, entry.note = _centres_for_heatmap(data_dir, out_dir, entries, config)
                options = {**options, **({"centres": centres} if centres else {})}
            run_config = replace(config, model=name, overwrite=True, resume=False,
                                 model_options=options,  # a fair race: fresh weights
                                 from_scratch=not (config.init or config.pretrain))
            result = train(data_dir, out_dir / name, run_config, log, show_progress)
        except (DatasetError, ModelFileError, ValueError) as error:
            entry.error = str(error)
            log(f"{name}: {error}")
            continue
        recognizer = Recognizer.load(result.model_path, device="cpu")
        reading = recognizer.reading
        entry.accuracy = reading.headline(result.metrics) if result.metrics else None
        entry.accuracy_kind = "sequence" if reading.ordered else "exact set"
        entry.char_accuracy = result.metrics.get(reading.char_metric)
        entry.warnings = result.warnings
        entry.train_minutes = round(result.minutes, 2)
        entry.epochs, entry.best_epoch = result.epochs, result.best_epoch
        if result.history:
            entry.last_accuracy = result.history[-1].get("val_accuracy")
        entry.parameters = sum(p.numel() for p in recognizer.backend.model.parameters())
        entry.file_bytes = os.path.getsize(result.model_path)
        entry.model_path = str(result.model_path)
        entry.images_per_second = round(measure_speed(recognizer, [s.path for s in val]), 1)
    results = [entries[name] for name in order]
    write_comparison(results, data_dir, out_dir, config)
    return results


def write_comparison(entries: Sequence[Entry], data_dir: Path, out_dir: Path,
                     config: TrainConfig) -> None:
    """compare.json, compare.md and compare.png in ``out_dir``, each written atomically."""
    setting = {
        "data": str(data_dir), "val_split": config.val_split, "seed": config.seed,
        "max_minutes": config.max_minutes, "epochs": config.epochs,
        "machine": machine(), "date": now(),
    }
    atomic_write_text(out_dir / "compare.json", json.dumps(
        {"setting": setting, "results": [asdict(e) for e in entries]}, indent=2) + "\n")
    atomic_write_text(out_dir / "compare.md", comparison_table(entries, setting))
    atomic_write_bytes(out_dir / "compare.png", _chart(entries))


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def comparison_table(entries: Sequence[Entry], setting: dict) -> str:
    budget = (f"{setting['max_minutes']} min each" if setting["max_minutes"]
              else "default schedule")
    lines = [
        f"# captchalab compare: {setting['data']}", "",
        f"Same split (validation {setting['val_split']:.0%}, seed {setting['seed']}), "
        f"{budget}; {setting['machine']}; {setting['date']}.", "",
        "Accuracy is the best epoch's (the model file keeps that epoch, chosen on these "
        "validation images); the last epoch's accuracy shows how much that choice adds.", "",
        "| model | accuracy | char/label accuracy | best epoch | last epoch's accuracy | "
        "train min | epochs | parameters | file MB | CPU images/s | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        if e.error:
            lines.append(f"| {e.model} | failed |  |  |  |  |  |  |  |  | {e.error} |")
            continue
        kind = "" if e.accuracy_kind == "sequence" else f" ({e.accuracy_kind})"
        lines.append(
            f"| {e.model} | {_percent(e.accuracy)}{kind} | {_percent(e.char_accuracy)} | "
            f"{e.best_epoch or ''} | {_percent(e.last_accuracy)} | "
            f"{e.train_minutes:.1f} | {e.epochs} | {e.parameters / 1e6:.2f}M | "
            f"{(e.file_bytes or 0) / 1e6:.2f} | {e.images_per_second:.0f} | "
            f"{'; '.join(filter(None, [e.note, 'undertrained' if e.warnings else '']))} |")
    warned = [e for e in entries if e.warnings]
    if warned:
        lines += ["", "Undertrained (its figures understate the family):"]
        lines += [f"- {e.model}: {w}" for e in warned for w in e.warnings]
    return "\n".join(lines) + "\n"


def _chart(entries: Sequence[Entry]) -> bytes:
    plt = pyplot()
    done = [e for e in entries if not e.error]
    names = [e.model for e in done] or ["(none)"]
    figure, (accuracy_axis, speed_axis) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 1.6))
    accuracy = [100 * (e.accuracy or 0) for e in done] or [0]
    bars = accuracy_axis.barh(names, accuracy, color="tab:blue")
    label_bars(accuracy_axis, bars, [f"{a:.1f}%" for a in accuracy] if done else ["no results"])
    accuracy_axis.set(xlim=(0, 118), xlabel="validation accuracy, % (exact set for multilabel)")
    accuracy_axis.set_xticks(range(0, 101, 20))
    speed = [e.images_per_second or 0 for e in done] or [0]
    bars = speed_axis.barh(names, speed, color="tab:green")
    label_bars(speed_axis, bars, [f"{s:.0f}" for s in speed] if done else [""])
    speed_axis.set(xlim=(0, max(speed) * 1.2 or 1), xlabel="CPU images / s")
    speed_axis.set_yticklabels([])
    for axis in (accuracy_axis, speed_axis):
        axis.invert_yaxis()
    figure.tight_layout()
    return png_bytes(figure)
