"""Reading speed of two versions of the code side by side: the same ONNX models, the same
image bytes, rounds alternated between the versions, and ddddocr on the same images.

Each ``--path LABEL=DIR`` is a checkout of captchalab (``.`` for this one, or a ``git
worktree`` of an older commit); every round starts one process per path with ``PYTHONPATH``
at it, which reads every ``--model LABEL=FILE.onnx`` through ``Recognizer.predict`` from PNG
bytes: in batches of 64 (images/s) and one image at a time (milliseconds). The rounds go
path by path in turn, so a slower moment of the machine falls on each alike; the report
gives the medians over the rounds (batches) and the percentiles over every single image.

    git worktree add /tmp/before 0436274^
    python benchmarks/reading_paths.py --data ../shared/datasets/captcha_v2/images \\
        --model teacher=teacher.onnx --model student=student.onnx \\
        --path today=. --path before=/tmp/before \\
        --ddddocr-python benchmarks/.venv-ddddocr/bin/python --out benchmarks/runs/paths.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_speed import DDDDOCR_SCRIPT  # noqa: E402

# run in each path's own process: reads the request from stdin, answers one JSON line
WORKER = """
import json, sys, time
from captchalab import Recognizer
request = json.loads(sys.stdin.read())
data = [open(p, "rb").read() for p in request["images"]]
answer = {"package": __import__("captchalab").__file__, "models": {}}
for label, path in request["models"].items():
    model = Recognizer.load(path)
    model.predict(data[:64], batch_size=64)
    for d in data[:20]:
        model.predict(d)
    started = time.perf_counter()
    for start in range(0, len(data), 64):
        model.predict(data[start:start + 64], batch_size=64)
    rate = len(data) / (time.perf_counter() - started)
    singles = []
    for d in data[:request["single"]]:
        started = time.perf_counter()
        model.predict(d)
        singles.append((time.perf_counter() - started) * 1e3)
    answer["models"][label] = {"rate": rate, "singles": singles}
print(json.dumps(answer))
"""


def measure(path: Path, models: dict[str, str], images: list[str], single: int) -> dict:
    """One round of one path: every model's batch rate and single-image times."""
    env = {**os.environ, "PYTHONPATH": str(path.resolve())}
    request = json.dumps({"models": models, "images": images, "single": single})
    done = subprocess.run([sys.executable, "-c", WORKER], input=request, env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of PNG images")
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=ONNX")
    parser.add_argument("--path", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--single", type=int, default=200, help="images timed one at a time")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ddddocr-python", help="a Python with ddddocr installed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/reading_paths.json"))
    args = parser.parse_args()
    images = sorted(str(p) for p in args.data.iterdir() if p.suffix == ".png")[: args.images]
    models = dict(item.split("=", 1) for item in args.model)
    paths = {label: Path(folder) for label, folder in (p.split("=", 1) for p in args.path)}
    rates = {(p, m): [] for p in paths for m in models}
    singles = {(p, m): [] for p in paths for m in models}
    packages = {}
    for _ in range(args.rounds):
        for label, folder in paths.items():
            answer = measure(folder, models, images, args.single)
            packages[label] = answer["package"]
            for model, row in answer["models"].items():
                rates[label, model].append(row["rate"])
                singles[label, model] += row["singles"]
    rows = [{"path": p, "package": packages[p], "model": m,
             "images_per_s_batch64": round(statistics.median(rates[p, m]), 1),
             "rounds": [round(r, 1) for r in rates[p, m]],
             "single_p50_ms": round(float(np.percentile(singles[p, m], 50)), 3),
             "single_p90_ms": round(float(np.percentile(singles[p, m], 90)), 3)}
            for p in paths for m in models]
    if args.ddddocr_python:
        started = time.perf_counter()
        done = subprocess.run([args.ddddocr_python, "-c", DDDDOCR_SCRIPT], check=True,
                              input=json.dumps(images), capture_output=True, text=True)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        times = [t * 1e3 for t in answer["times"]]
        rows.append({"path": "ddddocr 1.6.1", "model": "its default (zero-shot)",
                     "images_per_s_batch64": round(1e3 / statistics.mean(times), 1),
                     "single_p50_ms": round(float(np.percentile(times, 50)), 3),
                     "single_p90_ms": round(float(np.percentile(times, 90)), 3),
                     "seconds": round(time.perf_counter() - started, 1)})
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"{_cpu_name()}", "images": len(images), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| path | model | images/s at 64 (ddddocr: one by one) | one image p50 (p90) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['path']} | {row['model']} | {row['images_per_s_batch64']:.0f} | "
              f"{row['single_p50_ms']:.2f} ms ({row['single_p90_ms']:.2f}) |")


def _cpu_name() -> str:
    """The CPU's model name and whether it has AVX-512 (Linux), for the report."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "cpu"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), "cpu")
    return name + (", AVX-512" if "avx512f" in info else ", no AVX-512")


if __name__ == "__main__":
    main()
