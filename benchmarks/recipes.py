"""Seed 002's training recipes against the default one, on the shared datasets.

Each recipe is `captchalab train DATA` with its flags, on the same split (20% validation,
seed 0: larger validation sets than the default 10%, so that one image weighs less), run
one after the other so that timings do not disturb each other:

- baseline: the default recipe;
- restarts: `--restarts 6,2,1` (6 seeds to a quarter of the schedule, the best 2 to half,
  the best one to the end: 2.5 runs' worth of training);
- deskew: `--deskew` (least-squares midline straightened, text height normalised);
- torchrun-2: the default recipe in 2 processes (`torchrun --standalone --nproc_per_node=2
  -m captchalab train ...`), to compare with the baseline's one process;
- self-training: half of the training images keep their labels, the other half are given
  without (`--unlabelled`), 1 round; round 0 (the labelled half alone, same validation
  images) is its baseline. The labelled half is drawn at random from the training split.
  Run through the Python API, which takes the split as given.

    python benchmarks/recipes.py --datasets swust_2019b,sysu --recipes baseline,restarts

Results merge into benchmarks/results_recipes.json (one entry per dataset and recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results_recipes.json"
VAL_SPLIT = "0.2"
RECIPES = {
    "baseline": [],
    "restarts": ["--restarts", "6,2,1"],
    "deskew": ["--deskew"],
}
LABELLED_SHARE = 0.5  # self-training: the share of training images that keep their labels
SELF_TRAINING_ROUNDS = 1


def run(name: str, data: Path, out: Path, extra: list[str], processes: int = 1) -> dict:
    arguments = ["train", str(data), "--out", str(out), "--val-split", VAL_SPLIT, *extra]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}", "-m", "captchalab"] if processes > 1 else
                [sys.executable, "-m", "captchalab"])
    started = time.perf_counter()
    subprocess.run([*launcher, *arguments, "--quiet", "--overwrite"], check=True)
    minutes = (time.perf_counter() - started) / 60
    if processes > 1:
        arguments = [f"torchrun --standalone --nproc_per_node={processes} -m captchalab",
                     *arguments]
    summary = json.loads((out / "summary.json").read_text())
    row = {"recipe": name, "command": " ".join(
               arguments if processes > 1 else ["captchalab", *arguments]),
           "validation_images": summary["val_count"],
           "sequence_accuracy": summary["val_sequence_accuracy"],
           "char_accuracy": summary["val_char_accuracy"],
           "train_minutes": round(minutes, 2)}
    if (out / "restarts.json").is_file():
        report = json.loads((out / "restarts.json").read_text())
        row["restarts"] = {"plan": report["plan"], "winner": report["winner"],
                           "stages": [{"end_epoch": s["end_epoch"],
                                       "val_accuracy": s["val_accuracy"],
                                       "runs": s["runs"]} for s in report["stages"]]}
    if (out / "self_training.json").is_file():
        row["self_training"] = json.loads((out / "self_training.json").read_text())
    return row


def self_training(data: Path, out: Path, epochs: int | None = None,
                  budget_minutes: float | None = None) -> dict:
    """Self-training on a quarter of the labels, the rest given as unlabelled images."""
    from captchalab.data import read_labelled_folder, split_samples
    from captchalab.training import TrainConfig
    from captchalab.training.self_training import self_train

    folder = read_labelled_folder(data)
    train, val = split_samples(folder.samples, float(VAL_SPLIT), seed=0)
    # the split lists files in name (= label) order: draw the labelled half at random, or it
    # would hold only labels from the start of the alphabet
    shuffled = [train[i] for i in random.Random(0).sample(range(len(train)), len(train))]
    labelled = shuffled[: round(len(train) * LABELLED_SHARE)]
    train = shuffled
    pool = out / "unlabelled"
    shutil.rmtree(pool, ignore_errors=True)
    pool.mkdir(parents=True)
    truths = {}
    for i, sample in enumerate(train[len(labelled):]):
        name = f"u{i:05d}{sample.path.suffix}"
        (pool / name).symlink_to(sample.path.resolve())
        truths[name] = sample.label
    started = time.perf_counter()
    config = TrainConfig(overwrite=True, epochs=epochs, max_minutes=budget_minutes,
                         unlabelled=str(pool), self_training_rounds=SELF_TRAINING_ROUNDS)
    trained = self_train(data, out, config, show_progress=False,
                         log=lambda line: print(line, file=sys.stderr), split=(labelled, val))
    minutes = (time.perf_counter() - started) / 60
    rounds = []
    for record in trained.report["rounds"]:
        row = {k: record[k] for k in ("round", "pseudo_labelled", "val_accuracy")}
        if record["round"]:  # how many pseudo-labels were right (the benchmark knows)
            from captchalab import Recognizer
            from captchalab.training.self_training import pseudo_labels, unlabelled_images

            previous = Recognizer.load(out / f"round-{record['round'] - 1}" / "model.safetensors")
            images, _ = unlabelled_images(pool)
            lengths = sorted({len(s.label) for s in labelled})
            pseudo = pseudo_labels(previous, images, trained.report["threshold"], lengths)
            right = sum(s.label == truths[s.path.name] for s in pseudo)
            row["pseudo_label_accuracy"] = right / len(pseudo) if pseudo else None
        rounds.append(row)
    best = trained.report["rounds"][trained.best_round]["metrics"]
    budget = f" --max-minutes {budget_minutes}" if budget_minutes else ""
    return {"recipe": "self-training",
            "command": f"captchalab train DATA --unlabelled POOL --self-training-rounds "
                       f"{SELF_TRAINING_ROUNDS}{budget} (labelled: {len(labelled)} of the "
                       f"{len(train)} training images; POOL: the other "
                       f"{len(train) - len(labelled)})",
            "validation_images": len(val), "sequence_accuracy": best["sequence_accuracy"],
            "char_accuracy": best["char_accuracy"], "train_minutes": round(minutes, 2),
            "rounds": rounds, "best_round": trained.best_round,
            "dropped": trained.report["dropped"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="swust_2019b,sysu")
    parser.add_argument("--recipes", default="baseline,restarts,deskew")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/recipes"))
    parser.add_argument("--data-root", type=Path, default=SHARED,
                        help="folder holding the datasets (NAME/images)")
    parser.add_argument("--epochs", type=int, help="epochs of every run (a quick check)")
    parser.add_argument("--self-training-minutes", type=float,
                        help="time budget of each self-training round (default: none)")
    args = parser.parse_args()
    results_path = RESULTS if args.data_root == SHARED else args.out / RESULTS.name
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    for dataset in args.datasets.split(","):
        data = args.data_root / dataset / "images"
        extra = ["--epochs", str(args.epochs)] if args.epochs else []
        for recipe in args.recipes.split(","):
            out = args.out / dataset / recipe
            if recipe == "self-training":
                rows = [self_training(data, out, args.epochs, args.self_training_minutes)]
            elif recipe == "torchrun-2":
                rows = [run(recipe, data, out, extra, processes=2)]
            else:
                rows = [run(recipe, data, out, RECIPES[recipe] + extra)]
            for row in rows:
                print(json.dumps({"dataset": dataset, **{k: v for k, v in row.items()
                                                         if k in ("recipe", "sequence_accuracy",
                                                                  "train_minutes")}}),
                      flush=True)
                results["runs"][f"{dataset}/{row['recipe']}"] = {"dataset": dataset, **row}
            results["machine"] = (f"{os.cpu_count()} CPU cores, {platform.machine()}, "
                                  f"Python {platform.python_version()}")
            results["date"] = datetime.now(timezone.utc).date().isoformat()
            results_path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
