"""Seed 002's training recipes against the default one, on the shared datasets.

Each recipe is `captchalab train DATA` with its flags, on the same split (20% validation,
seed 0: larger validation sets than the default 10%, so that one image weighs less), run
one after the other so that timings do not disturb each other:

- baseline: the default recipe;
- restarts: `--restarts 6,2,1` (6 seeds to a quarter of the schedule, the best 2 to half,
  the best one to the end: 2.5 runs' worth of training);
- deskew: `--deskew` (least-squares midline straightened, text height normalised).

    python benchmarks/recipes.py --datasets swust_2019b,sysu --recipes baseline,restarts

Results merge into benchmarks/results_recipes.json (one entry per dataset and recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def run(name: str, data: Path, out: Path, extra: list[str]) -> dict:
    arguments = ["train", str(data), "--out", str(out), "--val-split", VAL_SPLIT, *extra]
    command = [sys.executable, "-m", "captchalab.cli", *arguments, "--quiet", "--overwrite"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - started) / 60
    summary = json.loads((out / "summary.json").read_text())
    row = {"recipe": name, "command": " ".join(["captchalab", *arguments]),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="swust_2019b,sysu")
    parser.add_argument("--recipes", default="baseline,restarts,deskew")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/recipes"))
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    for dataset in args.datasets.split(","):
        data = SHARED / dataset / "images"
        for recipe in args.recipes.split(","):
            out = args.out / dataset / recipe
            rows = [run(recipe, data, out, RECIPES[recipe])]
            for row in rows:
                print(json.dumps({"dataset": dataset, **{k: v for k, v in row.items()
                                                         if k in ("recipe", "sequence_accuracy",
                                                                  "train_minutes")}}),
                      flush=True)
                results["runs"][f"{dataset}/{row['recipe']}"] = {"dataset": dataset, **row}
            results["machine"] = (f"{os.cpu_count()} CPU cores, {platform.machine()}, "
                                  f"Python {platform.python_version()}")
            results["date"] = datetime.now(timezone.utc).date().isoformat()
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
