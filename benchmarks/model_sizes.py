"""Reading speed of model sizes side by side: the same images, one process, rounds alternated.

Each model (``LABEL=model.safetensors``, e.g. crnn runs with ``--width-multiplier`` 0.5, 1 and
1.5) is exported to ONNX and read through ``Recognizer.predict`` from PNG bytes: in batches of
64 (images/s, median of the rounds) and one image at a time (p50, p90). The rounds go model
by model in turn, so a slower moment of the machine falls on every model alike. Also the
parameters and the file sizes; accuracy is the training runs' (benchmarks/recipe_ablation.py).
With ``--ddddocr-python``, ddddocr reads the same images one at a time in its own Python
(it has no batches: its images/s is the inverse of its mean time per image).

    python benchmarks/model_sizes.py --data ../shared/datasets/captcha_v2/images \\
        --model 0.5=runs/w05/model.safetensors --model 1=runs/w1/model.safetensors \\
        --model 1.5=runs/w15/model.safetensors --out benchmarks/runs/model_sizes.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_speed import DDDDOCR_SCRIPT  # noqa: E402

from captchalab import Recognizer  # noqa: E402
from captchalab.data import read_labelled_folder  # noqa: E402
from captchalab.export import export_onnx  # noqa: E402
from captchalab.runtime.model_file import load_model_file  # noqa: E402


def batch_rate(model: Recognizer, data: list[bytes]) -> float:
    """Images per second of ``predict`` over ``data`` in batches of 64."""
    started = time.perf_counter()
    model.predict(data, batch_size=64)
    return len(data) / (time.perf_counter() - started)


def one_by_one(model: Recognizer, data: list[bytes]) -> list[float]:
    """Milliseconds of ``predict`` on each image alone."""
    times = []
    for d in data:
        started = time.perf_counter()
        model.predict(d)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=PATH",
                        help="a .safetensors model file, named by LABEL (repeat)")
    parser.add_argument("--data", type=Path, required=True, help="labelled folder of images")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--single", type=int, default=300, help="images timed one at a time")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/model_sizes.json"))
    parser.add_argument("--ddddocr-python", help="a Python with ddddocr installed")
    args = parser.parse_args()
    samples = read_labelled_folder(args.data).samples
    data = [s.path.read_bytes() for s in samples[: args.images]]
    models, rows = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for item in args.model:
            label, _, path = item.partition("=")
            onnx = export_onnx(Path(path), Path(work) / f"{label}.onnx")
            source = load_model_file(path)
            card, weights = source.card, source.tensors
            models[label] = Recognizer.load(onnx)
            rows[label] = {
                "model": path, "config": card.config,
                "parameters": int(sum(np.asarray(w).size for w in weights.values())),
                "safetensors_bytes": Path(path).stat().st_size,
                "onnx_bytes": onnx.stat().st_size,
                "input": [card.preprocessing.height, card.preprocessing.width]}
        rates: dict[str, list[float]] = {label: [] for label in models}
        singles: dict[str, list[float]] = {label: [] for label in models}
        for model in models.values():  # warm-up
            model.predict(data[:64], batch_size=64)
            one_by_one(model, data[:20])
        for _ in range(args.rounds):
            for label, model in models.items():
                rates[label].append(batch_rate(model, data))
        for label, model in models.items():
            singles[label] = one_by_one(model, data[: args.single])
        for label in models:
            rows[label].update({
                "images_per_s_batch64": round(statistics.median(rates[label]), 1),
                "images_per_s_rounds": [round(r, 1) for r in rates[label]],
                "single_p50_ms": round(float(np.percentile(singles[label], 50)), 3),
                "single_p90_ms": round(float(np.percentile(singles[label], 90)), 3)})
    if args.ddddocr_python:
        result = subprocess.run([args.ddddocr_python, "-c", DDDDOCR_SCRIPT], check=True,
                                input=json.dumps([str(s.path) for s in samples[: args.images]]),
                                capture_output=True, text=True)
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        times = [t * 1e3 for t in answer["times"]]
        rows["ddddocr"] = {"onnx_bytes": answer["bytes"], "parameters": None,
                           "images_per_s_batch64": round(1e3 / statistics.mean(times), 1),
                           "single_p50_ms": round(float(np.percentile(times, 50)), 3),
                           "single_p90_ms": round(float(np.percentile(times, 90)), 3)}
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "data": str(args.data), "images": len(data), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| size | parameters | file | images/s at 64 (ddddocr: one by one) | one image p50 |")
    print("|---|---|---|---|---|")
    for label, row in rows.items():
        parameters = f"{row['parameters'] / 1e6:.2f}M" if row["parameters"] else "?"
        size = row.get("safetensors_bytes") or row["onnx_bytes"]  # ddddocr: its ONNX file
        print(f"| {label} | {parameters} | {size / 1e6:.2f} "
              f"MB | {row['images_per_s_batch64']:.0f} | {row['single_p50_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
