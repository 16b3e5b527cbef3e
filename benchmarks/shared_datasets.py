"""Default `captchalab train` on every shared dataset, beside ddddocr's zero-shot accuracy.

For each dataset: run the CLI exactly as a user would (`captchalab train DATA --out RUN`,
10% validation, seed 0), then measure on the same validation images:
captchalab's sequence/character accuracy, training minutes, model size and CPU images/s
(batch 64, preprocessing and decoding included), and ddddocr's zero-shot accuracy when a
Python with ddddocr is given (`--ddddocr-python`; it is never a captchalab dependency).

    python benchmarks/shared_datasets.py --out benchmarks/runs/shared \
        --ddddocr-python benchmarks/.venv-ddddocr/bin/python
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

from captchalab import Recognizer
from captchalab.data import read_labelled_folder, split_samples
from captchalab.runtime.metrics import text_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = ("captcha_v2", "swust_2019b", "swust_2020", "sysu")
DDDDOCR_SCRIPT = """
import json, sys
import ddddocr
ocr = ddddocr.DdddOcr(show_ad=False)
for path in json.load(sys.stdin):
    with open(path, "rb") as f:
        print(json.dumps(ocr.classification(f.read())))
"""


def ddddocr_predictions(python: str, paths: list[Path]) -> list[str]:
    run = subprocess.run([python, "-c", DDDDOCR_SCRIPT], input=json.dumps([str(p) for p in paths]),
                         capture_output=True, text=True, check=True)
    return [json.loads(line) for line in run.stdout.splitlines()]


def images_per_second(recognizer: Recognizer, paths: list[Path], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        recognizer.predict(paths, batch_size=64)
        best = min(best, time.perf_counter() - started)
    return len(paths) / best


def run_dataset(name: str, out: Path, ddddocr_python: str | None, extra: list[str]) -> dict:
    data = SHARED / name / "images"
    run_dir = out / name
    arguments = ["train", str(data), "--out", str(run_dir), *extra]
    command = [sys.executable, "-m", "captchalab.cli", *arguments, "--quiet", "--overwrite"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - started) / 60
    model_path = run_dir / "model.safetensors"
    recognizer = Recognizer.load(model_path)
    _, val = split_samples(read_labelled_folder(data).samples, 0.1, seed=0)
    paths, truths = [s.path for s in val], [s.label for s in val]
    predicted = [p.text for p in recognizer.predict(paths)]
    metrics = text_metrics(truths, predicted)
    folded = text_metrics([t.lower() for t in truths], [p.lower() for p in predicted])
    row = {
        "dataset": name, "validation_images": len(val),
        "sequence_accuracy": metrics["sequence_accuracy"],
        "char_accuracy": metrics["char_accuracy"],
        "sequence_accuracy_case_insensitive": folded["sequence_accuracy"],
        "train_minutes": round(minutes, 2),
        "model_mb": round(model_path.stat().st_size / 1e6, 2),
        "cpu_images_per_second": round(images_per_second(recognizer, paths), 1),
        "command": " ".join(["captchalab", *arguments]),
    }
    if ddddocr_python:
        guesses = ddddocr_predictions(ddddocr_python, paths)
        row["ddddocr_sequence_accuracy"] = text_metrics(truths, guesses)["sequence_accuracy"]
        row["ddddocr_sequence_accuracy_case_insensitive"] = text_metrics(
            [t.lower() for t in truths], [g.lower() for g in guesses])["sequence_accuracy"]
    print(json.dumps(row), flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| dataset | val images | captchalab seq. acc. | char acc. | seq. acc. (case-folded) "
             "| train min | model MB | CPU img/s | ddddocr seq. acc. (case-folded) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dddd = r.get("ddddocr_sequence_accuracy_case_insensitive")
        lines.append(
            f"| {r['dataset']} | {r['validation_images']} | {r['sequence_accuracy']:.1%} | "
            f"{r['char_accuracy']:.1%} | {r['sequence_accuracy_case_insensitive']:.1%} | "
            f"{r['train_minutes']:.1f} | {r['model_mb']:.2f} | {r['cpu_images_per_second']:.0f} | "
            + (f"{dddd:.1%} |" if dddd is not None else "n/a |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/shared"))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--ddddocr-python", help="a Python that has ddddocr installed")
    parser.add_argument("extra", nargs="*", help="extra arguments for captchalab train")
    args = parser.parse_args()
    rows = [run_dataset(name, args.out, args.ddddocr_python, args.extra)
            for name in args.datasets.split(",")]
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
