"""``audit``: how many labelled captchas does an attacker need to break this scheme?

Trains the default recipe on growing subsets of a labelled folder (the same validation
images for every run, a few seeds for the small sizes) and writes ``audit.json``, ``audit.md``
and ``audit.png``: the learning curve with its spread, the labels needed for 50/90/99% of
whole captchas, the characters most often confused, and a verdict in plain words.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from captchalab.data import Sample, read_labelled_folder, split_samples
from captchalab.experiments import AUDIT_MINUTES, AUDIT_SEEDS, AUDIT_SIZES, AUDIT_VAL_SPLIT
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.reporting.charts import machine, now, png_bytes, pyplot
from captchalab.reporting.progress import ProgressReporter
from captchalab.runtime.model_file import BASE_MODEL
from captchalab.runtime.recognizer import Recognizer
from captchalab.training.config import TrainConfig
from captchalab.training.distributed import refuse_under_torchrun
from captchalab.training.pretrain import pretrain as pretrain_model
from captchalab.training.recipes import train
from captchalab.training.schedule import STARVED_SHARE
from captchalab.training.self_training import self_train

LEVELS = (0.5, 0.9, 0.99)
MIN_RUN_MINUTES = 0.005  # a run whose share of the budget is spent still gets a moment


@dataclass
class AuditRun:
    size: int
    seed: int
    accuracy: float
    char_accuracy: float | None
    minutes: float
    model_path: str
    schedule_share: float = 1.0  # share of its planned optimiser steps the run did
    budget_minutes: float = 0.0  # the share of the audit's budget it was given
    # ran too few of its planned steps for its accuracy to say what the labels allow
    starved: bool = field(init=False)

    def __post_init__(self) -> None:
        self.starved = self.schedule_share < STARVED_SHARE


@dataclass
class AuditReport:
    setting: dict
    runs: list[AuditRun]
    curve: list[dict]  # per size: mean, min, max accuracy and the number of runs
    labels_needed: dict[str, float | None]  # "90%": labels (interpolated), None = not reached
    confusions: list[dict] = field(default_factory=list)  # most confused (truth, reading)
    verdict: str = ""
    starved_runs: int = 0  # runs stopped by the budget before half their schedule
    minutes_needed: float | None = None  # budget that would let every run finish (estimate)


def parse_sizes(text: str, available: int) -> list[int]:
    """``25,50,all`` -> sorted distinct sizes no larger than ``available`` (``all`` = it)."""
    sizes = set()
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            sizes.add(available)
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"`sizes` takes positive numbers or 'all', got {part!r}")
        sizes.add(min(int(part), available))
    return sorted(sizes)


def seeds_for(size: int, available: int, seeds: int) -> int:
    """Small subsets vary most from draw to draw, so they get ``seeds`` runs; the rest one."""
    return seeds if size < min(200, available) else 1


def run_minutes(plan: Sequence[int], total: float) -> list[float]:
    """The budget split over the runs in proportion to the square root of their sizes."""
    weights = [math.sqrt(size) for size in plan]
    return [total * w / sum(weights) for w in weights]


def next_budget(plan: Sequence[int], done: int, left: float) -> float:
    """Run ``done``'s share of the ``left`` minutes, by the square root of the sizes still
    to run: minutes that earlier runs did not need go to the later (larger) ones."""
    return run_minutes(plan[done:], left)[0]


def labels_needed(curve: Sequence[dict], level: float) -> float | None:
    """Labels at which the mean accuracy first reaches ``level`` (log-interpolated)."""
    previous = None
    for point in curve:
        if point["mean"] >= level:
            if previous is None:
                return float(point["size"])
            (s0, a0), (s1, a1) = (previous["size"], previous["mean"]), (point["size"],
                                                                         point["mean"])
            t = (level - a0) / (a1 - a0)
            return round(math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0))), 1)
        previous = point
    return None


def confusion_pairs(truths: Sequence[str], readings: Sequence[str]) -> Counter:
    """(true character, read character) counts, position by position, for same-length reads."""
    pairs: Counter = Counter()
    for truth, reading in zip(truths, readings):
        if len(truth) == len(reading):
            pairs.update((t, r) for t, r in zip(truth, reading) if t != r)
    return pairs


def verdict(curve: Sequence[dict], needed: dict[str, float | None], starved: int = 0,
            minutes_needed: float | None = None) -> str:
    """The result for the scheme's owner, in one or two sentences; none when runs were
    starved by the budget, since their low accuracy would read as a strong scheme."""
    if starved:
        return (f"No verdict: the budget was too small. {starved} run(s) stopped before half "
                "of their training schedule, so their accuracy says nothing about what an "
                "attacker with that many labels achieves. Run the audit again with a "
                f"training budget of about {minutes_needed:.0f} minutes.")
    best = curve[-1]
    if needed["90%"] is not None:
        point = next(p for p in curve if p["mean"] >= 0.9)
        strength = ("weak: cheap to break" if point["size"] <= 200 else
                    "moderate: breakable with some labelling effort")
        return (f"An attacker with {point['size']} labelled captchas solves "
                f"{point['mean']:.1%} of them; the scheme is {strength}.")
    return (f"With {best['size']} labelled captchas an attacker solves {best['mean']:.1%} of "
            "them; 90% was not reached with the labels available, so more labels (or a "
            "stronger attack such as pretraining on synthetic look-alikes) would be needed.")


def audit(data_dir: str | Path, out_dir: str | Path, sizes: str = AUDIT_SIZES,
          config: TrainConfig | None = None, max_minutes: float = AUDIT_MINUTES,
          seeds: int = AUDIT_SEEDS, pretrain: str | None = None,
          log: Callable[[str], None] = print, show_progress: bool = True,
          init: str | None = None, self_training: bool = False) -> AuditReport:
    """Learning curve of ``config``'s recipe on ``data_dir``, from fresh weights. With
    ``init`` every run starts from that model (``"base"``: the packaged base model, the cheap
    strong attacker); with ``pretrain`` (a model file, or a synthetic scheme to pretrain on
    first, cached) from that model: the attacker who draws look-alike captchas first. With
    ``self_training`` every run also self-trains on the training pool's other images, their
    labels unseen: the attacker who downloads unlabelled captchas, which cost nothing."""
    refuse_under_torchrun("audit")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    config = config or TrainConfig(val_split=AUDIT_VAL_SPLIT)
    if self_training:  # self-training's own rules (a family that reads strings, ...)
        replace(config, unlabelled="the other training images").validate(has_data=True)
    folder = read_labelled_folder(data_dir, config.alphabet, config.case_insensitive)
    folder.raise_if_bad(config.skip_bad)
    pool, val = split_samples(folder.samples, config.val_split, config.seed)
    if not val:
        raise ValueError(f"{data_dir}: too few images to hold out a validation set")
    plan = [(size, seed) for size in parse_sizes(sizes, len(pool))
            for seed in range(seeds_for(size, len(pool), seeds))]
    if pretrain and init:
        raise ValueError("give `init` or `pretrain`, not both")
    if pretrain:
        init = (pretrain if pretrain.endswith(".safetensors") else
                str(pretrain_model(data_dir, pretrain, config, log, show_progress,
                                   split=(pool, val))))
    log(f"audit of {data_dir}: {len(plan)} runs on subsets of {len(pool)} training images, "
        f"{len(val)} validation images, {max_minutes:g} minutes of training in all")
    runs, pairs, left = [], Counter(), max_minutes
    sizes_planned = [size for size, _ in plan]
    reporter = ProgressReporter(show_progress)
    with reporter.task("audit", max_minutes, percent=True) as advance:
        for done, (size, seed) in enumerate(plan):
            budget = max(next_budget(sizes_planned, done, left), MIN_RUN_MINUTES)
            subset = random.Random(f"{config.seed}:{size}:{seed}").sample(pool, size)
            run_dir = out_dir / "runs" / f"{size}-seed{seed}"
            run_config = replace(config, seed=seed, max_minutes=budget, init=init,
                                 from_scratch=init is None, overwrite=True, resume=False,
                                 cycles=config.cycles or 1)
            if self_training:  # the rounds share the run's budget
                rounds = run_config.self_training_rounds + 1
                taken = {s.path for s in subset}
                result = self_train(data_dir, run_dir,
                                    replace(run_config, max_minutes=budget / rounds),
                                    log=lambda _: None, show_progress=False,
                                    split=(subset, val),
                                    unlabelled=[s.path for s in pool if s.path not in taken]
                                    ).result
            else:
                result = train(data_dir, run_dir, run_config, log=lambda _: None,
                               show_progress=False, split=(subset, val))
            run = AuditRun(size, seed, result.reading.headline(result.metrics),
                           result.metrics.get(result.reading.char_metric),
                           round(result.minutes, 2), str(result.model_path),
                           round(result.steps / max(result.steps_planned, 1), 4),
                           round(budget, 2))
            runs.append(run)
            left = max(0.0, left - result.minutes)
            pairs += _confusions(result.model_path, val)
            advance(to=max_minutes - left, status=f"{size} labels, seed {seed}: "
                    f"{run.accuracy:.1%}" + (" (starved)" if run.starved else ""))
    report = summarise(runs, pairs)
    report.setting = {"data": str(data_dir), "train_pool": len(pool), "val_count": len(val),
                      "sizes": sizes, "seeds": seeds, "max_minutes": max_minutes,
                      "model": config.model, "pretrain": pretrain,
                      "self_training": self_training,
                      "attacker": attacker(init, pretrain, self_training), "machine": machine(),
                      "date": now()}
    write_audit(report, out_dir)
    return report


def attacker(init: str | None, pretrain: str | None, self_training: bool = False) -> str:
    """The attacker an audit models, in words."""
    if init == BASE_MODEL:
        words = "fine-tunes the packaged base model (zero-label start, the cheap strong attack)"
    elif pretrain and not pretrain.endswith(".safetensors"):
        words = f"pretrains on synthetic {pretrain} captchas, then fine-tunes"
    elif init or pretrain:
        words = f"fine-tunes {init or pretrain}"
    else:
        words = "trains from scratch on the labels" + ("" if self_training else " alone")
    if self_training:
        words += (", and self-trains on the other training images with their labels unseen "
                  "(unlabelled captchas cost an attacker nothing)")
    return words


def _confusions(model_path: Path, val: Sequence[Sample]) -> Counter:
    recognizer = Recognizer.load(model_path, device="cpu")
    if not recognizer.ordered:
        return Counter()
    readings = [p.characters for p in recognizer.predict([s.path for s in val])]
    return confusion_pairs([s.label for s in val], readings)


def summarise(runs: Sequence[AuditRun], pairs: Counter) -> AuditReport:
    """The curve, the labels needed per level, the top confusions and the verdict."""
    curve = []
    for size in sorted({r.size for r in runs}):
        values = [r.accuracy for r in runs if r.size == size]
        curve.append({"size": size, "mean": sum(values) / len(values), "min": min(values),
                      "max": max(values), "runs": len(values),
                      "starved": sum(r.starved for r in runs if r.size == size)})
    needed = {f"{level:.0%}": labels_needed(curve, level) for level in LEVELS}
    confusions = [{"truth": t, "read": r, "count": n} for (t, r), n in pairs.most_common(10)]
    starved = sum(r.starved for r in runs)
    # each run's time for its whole schedule at the speed it trained, with a tenth to spare
    minutes_needed = (math.ceil(1.1 * sum(r.minutes / max(r.schedule_share, 1e-3)
                                          for r in runs)) if starved else None)
    return AuditReport({}, list(runs), curve, needed, confusions,
                       verdict(curve, needed, starved, minutes_needed), starved, minutes_needed)


def write_audit(report: AuditReport, out_dir: Path) -> None:
    """audit.json, audit.md and audit.png, each written atomically."""
    atomic_write_text(out_dir / "audit.json", json.dumps(asdict(report), indent=2) + "\n")
    atomic_write_text(out_dir / "audit.md", audit_markdown(report))
    atomic_write_bytes(out_dir / "audit.png", _chart(report))


def audit_markdown(report: AuditReport) -> str:
    s = report.setting
    lines = [f"# captchalab audit: {s['data']}", "", f"**{report.verdict}**", "",
             f"{s['val_count']} validation images; training subsets drawn from "
             f"{s['train_pool']}; model {s['model']}; the attacker "
             + s.get("attacker", attacker(None, s["pretrain"]))
             + f"; {s['max_minutes']:g} min of training in all; {s['machine']}; {s['date']}.",
             "", "| labels | runs | whole-captcha accuracy (mean) | min | max | starved runs |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {p['size']} | {p['runs']} | {p['mean']:.1%} | {p['min']:.1%} | "
              f"{p['max']:.1%} | {p.get('starved', 0) or ''} |" for p in report.curve]
    short = [r for r in report.runs if r.schedule_share < 1.0]
    if short:
        lines += ["", "Runs the budget stopped before their planned steps (a run that did "
                  f"less than {STARVED_SHARE:.0%} is starved and allows no verdict): "
                  + ", ".join(f"{r.size} labels seed {r.seed} {r.schedule_share:.0%}"
                              + (" (starved)" if r.starved else "") for r in short) + "."]
    lines += ["", "| accuracy | labels needed |", "|---|---|"]
    largest = report.curve[-1]["size"]
    lines += [f"| {level} | {'more than ' + str(largest) if n is None else f'{n:g}'} |"
              for level, n in report.labels_needed.items()]
    if report.confusions:
        lines += ["", "Most confused characters (true -> read, over all runs): "
                  + ", ".join(f"{c['truth']}->{c['read']} ({c['count']})"
                              for c in report.confusions)]
    return "\n".join(lines) + "\n"


def _chart(report: AuditReport) -> bytes:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    sizes = [p["size"] for p in report.curve]
    means = [100 * p["mean"] for p in report.curve]
    axis.fill_between(sizes, [100 * p["min"] for p in report.curve],
                      [100 * p["max"] for p in report.curve], alpha=0.25, label="min-max")
    axis.plot(sizes, means, marker="o", label="mean")
    for run in report.runs:
        axis.plot(run.size, 100 * run.accuracy, ".", color="grey", alpha=0.6)
    for level in LEVELS:
        axis.axhline(100 * level, color="grey", linewidth=0.6, linestyle=":")
    axis.set(xscale="log", ylim=(0, 100), xlabel="labelled training captchas",
             ylabel="whole-captcha accuracy, %", title="How many labels break this scheme")
    axis.set_xticks(sizes, [str(size) for size in sizes])
    axis.minorticks_off()
    axis.legend(loc="lower right")
    figure.tight_layout()
    return png_bytes(figure)
