"""Seed 002's staged restarts: many short runs from different seeds, keep the best by
validation loss, continue them, keep the best and train it to the end.

Every run follows the same full-length schedule (one-cycle over the final number of
epochs); a stage pauses the runs it keeps at its last epoch and the next stage resumes them
from their checkpoints, so a kept run is exactly the run it would have been without pauses.
All runs share one training/validation split, so their validation losses compare.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from captchalab.data import split_samples
from captchalab.fileio import atomic_write_text
from captchalab.models import family_class
from captchalab.reporting.curves import plot_restarts
from captchalab.reporting.progress import ProgressReporter
from captchalab.runtime.decoders import get_decoder
from captchalab.runtime.model_file import ModelFileError
from captchalab.training.config import TrainConfig
from captchalab.training.data import FolderData
from captchalab.training.distributed import refuse_under_torchrun
from captchalab.training.trainer import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    MODEL_FILE,
    Trainer,
    TrainResult,
    copy_run,
    planned_steps,
    read_training_folder,
)

RUNS_FOLDER = "restarts"
REPORT_FILE = "restarts.json"
PLOT_FILE = "restarts.png"


@dataclass(frozen=True)
class RestartPlan:
    """How many runs take part in each stage and the epoch each stage ends at."""

    counts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def make(cls, counts: Sequence[int], stage_epochs: Sequence[int] | None,
             total_epochs: int) -> RestartPlan:
        """``stage_epochs`` are the epochs the stages before the last end at (the last stage
        runs to ``total_epochs``); by default each stage ends at twice the previous one's
        epoch, the last at ``total_epochs``."""
        counts = tuple(int(n) for n in counts)
        if not counts or min(counts) < 1:
            raise ValueError(f"`restarts` needs whole numbers of at least 1, got {counts}")
        if any(later > earlier for earlier, later in zip(counts, counts[1:])):
            raise ValueError(f"`restarts` keeps the same or fewer runs at each stage, got "
                             f"{','.join(map(str, counts))}")
        if stage_epochs is None:
            ends = [max(1, total_epochs >> (len(counts) - 1 - i)) for i in range(len(counts))]
        else:
            ends = [int(e) for e in stage_epochs]
            if len(ends) == len(counts) - 1:
                ends.append(total_epochs)
            if len(ends) != len(counts):
                raise ValueError(f"`restart_epochs` gives {len(ends)} stage end(s) for "
                                 f"{len(counts)} stages: give one per stage but the last (it "
                                 "runs to the full schedule)")
            if ends[-1] != total_epochs:
                raise ValueError(f"the last stage ends at the full schedule, epoch "
                                 f"{total_epochs}; `restart_epochs` says {ends[-1]}")
        if any(b <= a for a, b in zip(ends, ends[1:])) or ends[0] < 1:
            raise ValueError(f"stage ends must grow from at least epoch 1 up to {total_epochs}, "
                             f"got {','.join(map(str, ends))}")
        return cls(counts, tuple(ends))


@dataclass
class RestartsResult:
    result: TrainResult  # the winner's, with its files copied into the output folder
    winner: int
    report: dict


def rank_by_validation_loss(last_records: dict[int, dict]) -> list[int]:
    """Seeds ordered best first: lowest validation loss, then highest validation accuracy."""
    def key(seed: int) -> tuple:
        record = last_records[seed]
        loss = record.get("val_loss")
        return (float("inf") if loss is None else loss, -record.get("val_accuracy", 0.0), seed)

    return sorted(last_records, key=key)


def _spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _run_dir(out: Path, seed: int) -> Path:
    return out / RUNS_FOLDER / f"seed-{seed}"


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_with_restarts(
    data_dir: str | Path, out_dir: str | Path, config: TrainConfig,
    log: Callable[[str], None] = print, show_progress: bool = True,
) -> RestartsResult:
    """Staged restarts (``config.restarts`` runs per stage, ending at
    ``config.restart_epochs``) with seeds ``config.seed``, ``config.seed + 1``, ...; writes
    each run into ``OUT/restarts/seed-N/``, the winner's model and curves into ``OUT``, and
    ``restarts.json`` / ``restarts.png`` (every run's validation curves on one plot). The
    folder is read and decoded once; every run of every stage trains on the same images."""
    refuse_under_torchrun("`restarts`")
    config.validate(has_data=True)
    out = Path(out_dir)
    existing = out / MODEL_FILE
    if existing.exists() and not (config.resume or config.overwrite):
        raise ModelFileError(f"{existing}: already exists; pass `resume` to continue those "
                             "restarts or `overwrite` to replace them")
    folder = read_training_folder(data_dir, config, log)
    train, val = split_samples(folder.samples, config.val_split, config.seed)
    if not val:
        raise ValueError(f"{data_dir}: too few images to hold out validation images for "
                         "`restarts`")
    data = FolderData.load(folder, train, val, config, ProgressReporter(show_progress),
                           needs_centres=family_class(config.model).needs_centres)
    total = planned_steps(config, len(train))[0]
    plan = RestartPlan.make(config.restarts or (1,), config.restart_epochs, total)
    alive = [config.seed + i for i in range(plan.counts[0])]
    stages: list[dict] = []
    results: dict[int, TrainResult] = {}
    for stage, (count, end) in enumerate(zip(plan.counts, plan.ends)):
        alive = alive[:count]
        log(f"stage {stage + 1}/{len(plan.counts)}: {len(alive)} run(s) to epoch {end} of "
            f"{total}")
        last: dict[int, dict] = {}
        for seed in alive:
            run_dir = _run_dir(out, seed)
            resume = (run_dir / CHECKPOINT_FILE).is_file() and (stage > 0 or config.resume)
            run_config = replace(config, seed=seed, epochs=total, resume=resume,
                                 overwrite=config.overwrite and not resume, restarts=None,
                                 restart_epochs=None, stop_epoch=None if end == total else end)
            results[seed] = Trainer(data_dir, run_dir, run_config,
                                    lambda line, seed=seed: log(f"seed {seed}: {line}"),
                                    show_progress, data=data).run()
            last[seed] = _history(run_dir)[-1]
        ranked = rank_by_validation_loss(last)
        keep = plan.counts[stage + 1] if stage + 1 < len(plan.counts) else 1
        stages.append({
            "end_epoch": end,
            "runs": [{"seed": s, "val_loss": last[s].get("val_loss"),
                      "val_accuracy": last[s].get("val_accuracy"),
                      "kept": s in ranked[:keep]} for s in sorted(last)],
            "val_accuracy": _spread([last[s].get("val_accuracy", 0.0) for s in last]),
            "val_loss": _spread([last[s].get("val_loss") or 0.0 for s in last]),
        })
        spread = stages[-1]["val_accuracy"]
        log(f"stage {stage + 1}: validation accuracy across seeds {spread['min']:.1%} .. "
            f"{spread['median']:.1%} (median) .. {spread['max']:.1%}; keeping seed(s) "
            f"{', '.join(map(str, ranked[:keep]))}")
        alive = ranked
    reading = get_decoder(family_class(config.model).decoder).reading
    finalists = {s: results[s] for s in alive[: plan.counts[-1]]}
    winner = max(finalists, key=lambda s: (reading.headline(finalists[s].metrics),
                                           -(last[s].get("val_loss") or 0.0), -s))
    copy_run(_run_dir(out, winner), out)
    histories = {r["seed"]: _history(_run_dir(out, r["seed"])) for r in stages[0]["runs"]}
    plot_restarts(histories, winner, plan.ends[:-1], out / PLOT_FILE)
    report = {"plan": {"counts": list(plan.counts), "ends": list(plan.ends)},
              "stages": stages, "winner": winner,
              "winner_metrics": finalists[winner].metrics}
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    first = stages[0]["val_accuracy"]
    note = (f"restarts: {plan.counts[0]} seeds at epoch {plan.ends[0]} read {first['min']:.2%}"
            f" .. {first['max']:.2%} of validation captchas; seed {winner} won")
    result = replace(finalists[winner], model_path=out / MODEL_FILE,
                     notes=[*finalists[winner].notes, note])
    return RestartsResult(result, winner, report)
