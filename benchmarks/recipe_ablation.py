"""Ablation of the default recipe's levers on the shared datasets, over repeated splits.

Each variant is the default ``TrainConfig`` with a few settings changed; each runs on every
dataset with every seed (the seed draws the validation split and the initialisation), and
the table gives the mean and the worst whole-captcha accuracy over the seeds. Runs append
to ``OUT/runs.jsonl`` as they finish, so an interrupted ablation continues where it stopped.

A dataset is a shared set (``../shared/datasets/NAME``) or a scheme of ``benchmarks/schemes``
(``hard62``): 2000 generated training images (seed 0) and 1000 fresh test images (seed 1),
generated once into ``OUT/NAME``; its accuracy is the test images', the validation split's
is kept beside it. ``hard62:20000`` draws 20000 training images instead (the same first
2000, the same test images), to see what more data of the scheme is worth.

    python benchmarks/recipe_ablation.py --out benchmarks/runs/ablation \\
        --datasets sysu,swust_2019b --seeds 0,1 --variants baseline,ema,captcha_aug
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from captchalab.training import TrainConfig, distill, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SCHEMES = Path(__file__).resolve().parent / "schemes"
SCHEME_TRAIN, SCHEME_TEST = 2000, 1000
VARIANTS: dict[str, dict] = {
    "default": {},  # the default recipe of the code that runs
    "baseline": {"ema": None},  # the recipe before the levers (one-cycle, no average)
    "ema": {"ema": 0.999},
    "ema0.995": {"ema": 0.995},
    "captcha_aug": {"augment_captcha": True},
    "ema+captcha_aug": {"ema": 0.999, "augment_captcha": True},
    "ema+strong_captcha_aug": {},  # measured with a first, stronger captcha_aug (see README)
    "width1.5": {"width_multiplier": 1.5},  # tries the base model, which does not fit
    "scratch": {"from_scratch": True},  # the default recipe without the base model
    "scratch_width0.5": {"from_scratch": True, "width_multiplier": 0.5},
    "scratch_width1.5": {"from_scratch": True, "width_multiplier": 1.5},
    "steps2x": {"epochs": "2x"},
    "ema+captcha_aug+steps2x": {"ema": 0.999, "augment_captcha": True, "epochs": "2x"},
    "no_augment": {"augment": False},
    "darkest": {"grey": "darkest"},
    "until_converged": {"schedule": "until-converged"},
    "until_converged+ema": {"schedule": "until-converged", "ema": 0.999, "max_minutes": 15},
    "until_converged+ema+captcha_aug": {"schedule": "until-converged", "ema": 0.999,
                                        "augment_captcha": True},
    "one_cycle": {"cycles": 1},  # the default, without chained cycles
    "patience2": {"cycle_patience": 2},  # chaining stops after two cycles that did not improve
    "scratch_patience2": {"from_scratch": True, "cycle_patience": 2},
    "height48": {"height": 48, "cycles": 1},
    "height42": {"height": 42, "cycles": 1},
    "height56": {"height": 56, "cycles": 1},
    "height56_chained": {"height": 56},  # the default (chained cycles) at the images' height
    "height44_chained": {"height": 44},  # hard62's height before case-sensitive labels got 32 px
    "conv": {"model_options": {"sequence": "conv"}},  # a convolution along the columns
    "conv_one_cycle": {"model_options": {"sequence": "conv"}, "cycles": 1},
    "aug1.75_one_cycle": {"augment_strength": 1.75, "cycles": 1},
    "wd0.05_one_cycle": {"weight_decay": 0.05, "cycles": 1},
    "lstm_one_cycle": {"model_options": {"sequence": "lstm"}, "cycles": 1},
    "lstm": {"model_options": {"sequence": "lstm"}},
    "no_lstm": {"model_options": {"sequence": "none"}},
    "no_lstm+captcha_aug": {"model_options": {"sequence": "none"}, "augment_captcha": True},
    # students of the "default" variant's model of the same dataset and seed (run it first)
    "distill_width0.5": {"width_multiplier": 0.5},
}
DISTILLED = "distill_"  # a variant so named is a student: `distill` from the default's model


def settings(variant: str, seed: int, val_split: float, train_count: int) -> TrainConfig:
    changes = dict(VARIANTS[variant])
    if changes.get("epochs") == "2x":  # twice the default schedule's epochs
        from captchalab.training.trainer import planned_steps

        changes["epochs"] = 2 * planned_steps(TrainConfig(), train_count)[0]
    return TrainConfig(seed=seed, val_split=val_split, overwrite=True, **changes)


def dataset_folders(dataset: str, out: Path) -> tuple[Path, Path | None]:
    """(labelled training folder, fresh test folder or None) of a shared set or a scheme."""
    name, _, drawn = dataset.partition(":")
    scheme = SCHEMES / f"{name}.toml"
    if not scheme.is_file():
        return SHARED / dataset / "images", None
    from captchalab.generators import generate

    folders = []
    for part, count, seed in (("train", int(drawn or SCHEME_TRAIN), 0),
                              ("test", SCHEME_TEST, 1)):
        folder = out / name / (f"{part}-{count}" if part == "train" and count != SCHEME_TRAIN
                               else part)
        if not (folder / "annotations.jsonl").is_file():  # written last: a finished folder
            generate(scheme, count, folder, seed=seed, workers=os.cpu_count() or 1)
        folders.append(folder)
    return folders[0], folders[1]


def run_one(variant: str, dataset: str, seed: int, val_split: float, out: Path) -> dict:
    from captchalab import Recognizer
    from captchalab.data import read_labelled_folder, split_samples

    data, test = dataset_folders(dataset, out)
    train_count = len(split_samples(read_labelled_folder(data).samples, val_split, seed)[0])
    config = settings(variant, seed, val_split, train_count)
    started = time.perf_counter()
    if variant.startswith(DISTILLED):
        teacher = out / "default" / f"{dataset}-seed{seed}" / "model.safetensors"
        if not teacher.is_file():
            raise SystemExit(f"{teacher}: no teacher; run the default variant first")
        result = distill(teacher, data, out / variant / f"{dataset}-seed{seed}", config,
                         log=lambda _: None, show_progress=False)
    else:
        result = train(data, out / variant / f"{dataset.replace(':', '-')}-seed{seed}", config,
                       log=lambda _: None, show_progress=False)
    minutes = round((time.perf_counter() - started) / 60, 2)
    tested = {}
    if test is None:  # the wrong readings (validation or test images), to look at mistakes
        validation = split_samples(read_labelled_folder(data).samples, val_split, seed)[1]
        readings = Recognizer.load(result.model_path).predict([s.path for s in validation])
        tested = {"mistakes": [[s.path.name, s.label, r.text]
                               for s, r in zip(validation, readings) if r.text != s.label]}
    else:
        reading = Recognizer.load(result.model_path).read_folder(test)
        right = sum(p.text == t for p, t in zip(reading.predictions, reading.truths))
        tested = {"val_sequence_accuracy": result.metrics["sequence_accuracy"],
                  "test_count": len(reading.truths),
                  "sequence_accuracy": right / len(reading.truths),
                  "mistakes": [[s.path.name, t, p.text] for s, p, t in
                               zip(reading.folder.samples, reading.predictions, reading.truths)
                               if p.text != t]}
    return {"variant": variant, "dataset": dataset, "seed": seed,
            "sequence_accuracy": result.metrics["sequence_accuracy"],
            "sequence_accuracy_case_folded": result.metrics["sequence_accuracy_case_folded"],
            "char_accuracy": result.metrics["char_accuracy"],
            "val_count": result.metrics["count"], "best_epoch": result.best_epoch,
            "epochs": result.epochs, "steps": result.steps,
            "minutes": minutes, "settings": VARIANTS[variant], "ended": result.ended,
            "cycles": result.cycles, **tested}


def table(rows: list[dict], variants: list[str], datasets: list[str]) -> str:
    lines = ["| variant | " + " | ".join(f"{d} mean (worst)" for d in datasets)
             + " | mean minutes |", "|---|" + "---|" * (len(datasets) + 1)]
    for variant in variants:
        cells, minutes = [], []
        for dataset in datasets:
            runs = [r for r in rows if r["variant"] == variant and r["dataset"] == dataset]
            minutes += [r["minutes"] for r in runs]
            accuracies = [r["sequence_accuracy"] for r in runs]
            cells.append(f"{statistics.mean(accuracies):.2%} ({min(accuracies):.2%}), "
                         f"{len(runs)} splits" if runs else "")
        mean_minutes = f"{statistics.mean(minutes):.1f}" if minutes else ""
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {mean_minutes} |")
    return "\n".join(lines)


def confusions(rows: list[dict], top: int = 12) -> str:
    """The most frequent wrong symbols of the recorded validation mistakes, per variant and
    dataset: ``truth>read`` for mistakes of the right length, then how many were not."""
    lines = []
    for key in sorted({(r["variant"], r["dataset"]) for r in rows if "mistakes" in r}):
        pairs: Counter[str] = Counter()
        other = 0
        mistakes = [m for r in rows if (r["variant"], r["dataset"]) == key
                    for m in r.get("mistakes", [])]
        for _, truth, read in mistakes:
            if len(truth) != len(read):
                other += 1
                continue
            pairs.update(f"{a}>{b}" for a, b in zip(truth, read) if a != b)
        common = ", ".join(f"{pair} {count}" for pair, count in pairs.most_common(top))
        lines.append(f"{key[0]} on {key[1]}: {len(mistakes)} mistakes; {common}; "
                     f"{other} of another length")
    return "\n".join(lines)


LOOK_ALIKES = {"O": "0", "o": "0", "I": "1", "l": "1", "i": "1"}  # drawn alike in some fonts


def kinds(rows: list[dict]) -> str:
    """Each run's mistakes by kind: another length; the right letters in the wrong case;
    also a look-alike (``0/O/o``, ``1/l/I/i``) read as another; the rest."""
    def folded(text: str) -> str:
        return "".join(LOOK_ALIKES.get(c, c.lower()) for c in text)

    lines = []
    for r in rows:
        mistakes = r.get("mistakes", [])
        length = sum(len(t) != len(p) for _, t, p in mistakes)
        case = sum(len(t) == len(p) and t.lower() == p.lower() for _, t, p in mistakes)
        alike = sum(len(t) == len(p) and t.lower() != p.lower() and folded(t) == folded(p)
                    for _, t, p in mistakes)
        lines.append(f"{r['variant']} on {r['dataset']}, seed {r['seed']}: {len(mistakes)} "
                     f"mistakes: {length} another length, {case} case only, {alike} "
                     f"look-alikes, {len(mistakes) - length - case - alike} other")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/ablation"))
    parser.add_argument("--datasets", default="sysu,swust_2019b")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--val-split", type=float, default=0.2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--report", action="store_true",
                        help="print the tables of the runs already in OUT; run nothing")
    args = parser.parse_args()
    datasets, variants = args.datasets.split(","), args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["variant"], r["dataset"], r["seed"]) for r in rows}
    for variant in variants:
        for dataset in datasets:
            for seed in seeds:
                if (variant, dataset, seed) in done or args.report:
                    continue
                row = run_one(variant, dataset, seed, args.val_split, args.out)
                rows.append(row)
                with log.open("a") as stream:
                    stream.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    if args.report:
        rows = [r for r in rows if r["seed"] in seeds]
        print(table(rows, variants, datasets))
        print(kinds([r for r in rows if r["variant"] in variants and r["dataset"] in datasets]))
        return
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "val_split": args.val_split, "seeds": seeds, "rows": rows}
    (args.out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows, variants, datasets))
    print(confusions(rows))
    print(kinds([r for r in rows if r["variant"] in variants and r["dataset"] in datasets]))


if __name__ == "__main__":
    main()
