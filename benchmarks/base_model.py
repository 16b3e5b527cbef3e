"""The packaged base model: zero-shot readings and learning curves from it versus from scratch.

On each shared set one validation split (seed 0, ``--val-split``) is held out and kept for
every run, so both starts are judged on the same images. Each run trains the default recipe
(``train`` with no flags, which starts from the base model; ``--from-scratch`` for the other
start) on a subset of the rest: ``--sizes`` labels, ``--seeds`` subsets each. Zero-shot is
``predict base`` on the same validation images, case-folded, plain and restricted to the
set's symbols (``--allowed``), beside ddddocr's when a Python with ddddocr is given.
The start ``base+unlabelled`` is the base start with self-training (``--unlabelled``) on the
rest of the small subsets' pool, its labels hidden (the images linked into a folder under
neutral names): what a user with a few labels and a folder of unlabelled captchas of the
same site gets (``--rounds``: its most rounds). ``--cycle-patience`` sets how many chained
cycles in a row may fail to improve validation before a run stops. The training run selects
its epoch on those validation images, as the audit does, so that figure is a little
optimistic; every run below ``all`` labels is also read on ``TEST_IMAGES`` further labelled
images that no run trains or selects on (``test_accuracy``), the figure the targets are
judged on. ``--own-validation`` selects on the recipe's own 10% split of the labels
instead, as a user with only those labels would (50 labels: 45 to train, 5 to validate);
a self-training run then also reads the held-out images with every round's model
(``held_out_by_round``). Runs append to ``OUT/runs.jsonl`` as they finish; an interrupted
benchmark continues.

    python benchmarks/base_model.py --out benchmarks/runs/base_model \\
        --datasets captcha_v2,sysu --sizes 25,50,100 --seeds 0 --starts base,scratch \\
        --ddddocr-python benchmarks/.venv-ddddocr/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_datasets import DATASETS, SHARED, ddddocr_predictions  # noqa: E402

from captchalab import Recognizer  # noqa: E402
from captchalab.data import Sample, read_labelled_folder, split_samples  # noqa: E402
from captchalab.runtime.metrics import text_metrics  # noqa: E402
from captchalab.runtime.model_file import read_card  # noqa: E402
from captchalab.training import TrainConfig, train  # noqa: E402
from captchalab.training.config import DEFAULT_SELF_TRAINING_ROUNDS  # noqa: E402
from captchalab.training.trainer import MODEL_FILE  # noqa: E402

TEST_IMAGES = 300  # held out of the small subsets' pool, read by every run below `all`


def folder_of(name: str) -> Path:
    root = SHARED / name
    return root / "images" if (root / "images").is_dir() else root


def folded_accuracy(labels: list[str], readings: list[str]) -> float:
    return sum(a.lower() == b.lower() for a, b in zip(labels, readings)) / len(labels)


def held_out(name: str, val_split: float) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """A shared set's validation images (seed 0), the pool the subsets are drawn from, and
    the pool's last ``TEST_IMAGES`` images, which no run trains on."""
    pool, val = split_samples(read_labelled_folder(folder_of(name)).samples, val_split, 0)
    random.Random(f"base-bench-test:{name}").shuffle(pool)
    return val, pool[:-TEST_IMAGES], pool[-TEST_IMAGES:]


def exact_accuracy(model_path: Path, test: list[Sample]) -> float:
    readings = Recognizer.load(model_path).predict([s.path for s in test])
    return sum(p.text == s.label for p, s in zip(readings, test)) / len(test)


def zero_shot(name: str, val, ddddocr_python: str | None) -> dict:
    labels = [s.label for s in val]
    paths = [s.path for s in val]
    base = Recognizer.load("base")
    plain = [p.text for p in base.predict(paths)]
    symbols = "".join(sorted({c.lower() for label in labels for c in label}))
    allowed = "".join(sorted(set(symbols) | set(symbols.upper())))
    restricted = [p.text for p in base.predict(paths, allowed=allowed)]
    row = {"kind": "zero-shot", "dataset": name, "images": len(val),
           "base": folded_accuracy(labels, plain),
           "base_allowed": folded_accuracy(labels, restricted),
           "base_char_accuracy": text_metrics([s.lower() for s in labels],
                                              [s.lower() for s in plain])["char_accuracy"]}
    if ddddocr_python:
        row["ddddocr"] = folded_accuracy(labels, ddddocr_predictions(ddddocr_python, paths))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--sizes", default="10,25,50,100,200,all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--starts", default="base,scratch")
    parser.add_argument("--val-split", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=DEFAULT_SELF_TRAINING_ROUNDS,
                        help="self-training rounds at most (start base+unlabelled)")
    parser.add_argument("--cycle-patience", type=int, default=TrainConfig.cycle_patience,
                        help="cycles in a row without a gain that end a chain")
    parser.add_argument("--max-minutes", type=float,
                        help="each run's time budget (default: the recipe's, from the "
                        "training images; 15 gives the budget of before for a baseline)")
    parser.add_argument("--own-validation", action="store_true",
                        help="validate on the recipe's own split of the labels (10%%), as "
                        "a user with only those labels would, instead of the set's split")
    parser.add_argument("--no-curves", action="store_true", help="zero-shot only")
    parser.add_argument("--ddddocr-python")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    done = {json.dumps(r["key"]) for r in map(json.loads, log.read_text().splitlines())
            } if log.is_file() else set()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    base_card = read_card("base")
    for name in args.datasets.split(","):
        data = folder_of(name)
        val, small_pool, test = held_out(name, args.val_split)
        pool = small_pool + test
        key = ["zero-shot", name]
        if json.dumps(key) not in done:
            row = {"key": key, **zero_shot(name, val, args.ddddocr_python)}
            _append(log, row, machine, base_card)
        if args.no_curves:
            continue
        for size_text in args.sizes.split(","):
            size = len(pool) if size_text == "all" else int(size_text)
            for seed in map(int, args.seeds.split(",")):
                subset = pool if size_text == "all" else random.Random(
                    f"base-bench:{name}:{size}:{seed}").sample(small_pool, size)
                for start in args.starts.split(","):
                    key = run_key(name, size_text, seed, start, args)
                    if json.dumps(key) in done:
                        continue
                    run_dir = args.out / "runs" / "-".join(map(str, key))
                    unlabelled = (unlabelled_folder(run_dir / "unlabelled", small_pool, subset)
                                  if start == "base+unlabelled" else None)
                    config = TrainConfig(seed=seed, overwrite=True,
                                         from_scratch=start == "scratch",
                                         unlabelled=unlabelled and str(unlabelled),
                                         self_training_rounds=args.rounds,
                                         cycle_patience=args.cycle_patience,
                                         max_minutes=args.max_minutes)
                    started = time.perf_counter()
                    split = (split_samples(subset, config.val_split, seed)
                             if args.own_validation else (subset, val))
                    result = train(data, run_dir, config, log=lambda _: None,
                                   show_progress=False, split=split)
                    wall = (time.perf_counter() - started) / 60
                    card = read_card(result.model_path)
                    row = {"key": key, "kind": "curve", "dataset": name, "labels": size,
                           "seed": seed, "start": start, "started_from":
                           card.training.started_from, "val_images": len(split[1]),
                           "accuracy": result.metrics["sequence_accuracy"],
                           "accuracy_case_folded":
                           result.metrics.get("sequence_accuracy_case_folded"),
                           "test_images": 0 if size_text == "all" else len(test),
                           "test_accuracy": None if size_text == "all" else
                           exact_accuracy(result.model_path, test),
                           "minutes": round(result.minutes, 2),
                           "wall_minutes": round(wall, 2), "ended": result.ended,
                           "steps": result.steps, "why": card.training.why}
                    if unlabelled is not None:
                        report = json.loads((run_dir / "self_training.json").read_text())
                        row["self_training"] = [
                            {key: r[key] for key in ("round", "pseudo_labelled", "val_accuracy")}
                            for r in report["rounds"]] + [{"best_round": report["best_round"]}]
                        row["held_out_by_round"] = [
                            exact_accuracy(run_dir / f"round-{r['round']}" / MODEL_FILE, test)
                            for r in report["rounds"]]
                    _append(log, row, machine, base_card)
    summarise(log)


def run_key(name: str, size: str, seed: int, start: str, args: argparse.Namespace) -> list:
    """A run's key in runs.jsonl: the set, labels, seed and start, then each setting that
    is not the recipe's default (``rounds6``, ``patience2``, ``budget15``)."""
    settings = {"rounds": (args.rounds, DEFAULT_SELF_TRAINING_ROUNDS),
                "patience": (args.cycle_patience, TrainConfig.cycle_patience),
                "budget": (args.max_minutes, None)}
    return [name, size, seed, start] + [f"{tag}{value:g}" for tag, (value, default)
                                         in settings.items() if value != default] + (
        ["ownval"] if args.own_validation else [])


def unlabelled_folder(folder: Path, pool: list[Sample], labelled: list[Sample]) -> Path:
    """The pool's images that are not in ``labelled``, linked into ``folder`` under neutral
    names (``u00000.jpg``, ...), so that nothing of their labels reaches the run."""
    folder.mkdir(parents=True, exist_ok=True)
    taken = {s.path for s in labelled}
    for index, sample in enumerate(s for s in pool if s.path not in taken):
        link = folder / f"u{index:05d}{sample.path.suffix}"
        if not link.exists():
            link.symlink_to(sample.path.resolve())
    return folder


def _append(log: Path, row: dict, machine: str, base_card) -> None:
    row = {**row, "machine": machine, "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "base_created": base_card.created}
    with log.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def summarise(log: Path) -> None:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    for row in rows:
        if row["kind"] == "zero-shot":
            print(f"zero-shot {row['dataset']}: base {row['base']:.1%}, restricted to its "
                  f"symbols {row['base_allowed']:.1%}"
                  + (f", ddddocr {row['ddddocr']:.1%}" if "ddddocr" in row else ""))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["kind"] == "curve":
            start = row["start"] + "".join(f", {k}" for k in row["key"][4:])  # e.g. rounds5
            groups.setdefault((row["dataset"], row["labels"], start), []).append(row)
    for (name, labels, start), runs in sorted(groups.items()):
        values = [r["accuracy"] for r in runs]
        tests = [r["test_accuracy"] for r in runs if r.get("test_accuracy") is not None]
        held_out = (f"held-out test mean {statistics.mean(tests):.1%}, worst {min(tests):.1%}; "
                    if tests else "")
        print(f"{name} {labels} labels from {start}: {held_out}validation mean "
              f"{statistics.mean(values):.1%}, worst {min(values):.1%} over {len(values)} seeds, "
              f"{statistics.mean(r.get('wall_minutes', r['minutes']) for r in runs):.1f} min")


if __name__ == "__main__":
    main()
