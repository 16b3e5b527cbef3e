"""PyTorch eager vs ONNX fp32 vs ONNX int8 (vs ddddocr), side by side on the same images.

For each runtime: batch-1 latency (p50/p99) of reading one encoded image end to end (PNG
decode, preprocessing, network, decoding) and of the network plus decoding alone; batch-64
throughput from preprocessed pixels and end to end; file size; accuracy on every image and
on the model's own validation split. int8 is also tried as static QDQ convolutions (not a
captchalab option: measured here to show why). ddddocr runs in its own Python, if given.

    python benchmarks/runtime_speed.py --model runs/compare_v2/crnn/model.safetensors \
        --data ../shared/datasets/captcha_v2/images --out benchmarks/runs/runtime \
        --ddddocr-python benchmarks/.venv-ddddocr/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from captchalab import Recognizer
from captchalab.data import read_labelled_folder, split_samples
from captchalab.export import export_onnx
from captchalab.runtime.model_file import METADATA_KEY

DDDDOCR_SCRIPT = """
import json, sys, time
import numpy as np
import ddddocr
ocr = ddddocr.DdddOcr(show_ad=False)
paths = json.load(sys.stdin)
data = [open(p, "rb").read() for p in paths]
for d in data[:20]:
    ocr.classification(d)
texts, times = [], []
for d in data:
    t = time.perf_counter()
    texts.append(ocr.classification(d))
    times.append(time.perf_counter() - t)
import os, glob
folder = os.path.dirname(ddddocr.__file__)
size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(folder, "*.onnx")))
print(json.dumps({"texts": texts, "times": times, "bytes": size}))
"""


def static_int8(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """Convolutions as static QDQ int8 (per-channel), calibrated on real images."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"images": calibration[i : i + 32]}
                            for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.it, None)

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    source, model = onnx.load(str(fp32)), onnx.load(str(out))
    del model.metadata_props[:]
    model.metadata_props.extend(p for p in source.metadata_props if p.key == METADATA_KEY)
    onnx.save(model, str(out))
    prepared.unlink()
    return out


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def measure(recognizer: Recognizer, data: list[bytes], labels: list[str], val: set[int],
            single: int) -> dict:
    pixels = np.stack([recognizer.prepare(d) for d in data])
    for i in range(20):
        recognizer.predict(data[i])
    end_to_end, network = [], []
    for i in range(single):
        t = time.perf_counter()
        recognizer.predict(data[i])
        end_to_end.append(time.perf_counter() - t)
        t = time.perf_counter()
        recognizer.read(pixels[i : i + 1])
        network.append(time.perf_counter() - t)
    batched, whole, network_only = [], [], []
    for _ in range(3):
        t = time.perf_counter()
        for start in range(0, len(data), 64):
            recognizer.outputs(pixels[start : start + 64])
        network_only.append(time.perf_counter() - t)
        t = time.perf_counter()
        texts = [p.text for start in range(0, len(data), 64)
                 for p in recognizer.read(pixels[start : start + 64])]
        batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        recognizer.predict(data, batch_size=64)
        whole.append(time.perf_counter() - t)
    right = [t == label for t, label in zip(texts, labels)]
    return {
        "batch1_end_to_end": percentiles(end_to_end),
        "batch1_network_and_decoding": percentiles(network),
        "batch64_images_per_s_network_only": round(len(data) / min(network_only)),
        "batch64_images_per_s_from_pixels": round(len(data) / min(batched)),
        "batch64_images_per_s_end_to_end": round(len(data) / min(whole)),
        "accuracy_all": round(float(np.mean(right)), 4),
        "accuracy_validation": round(float(np.mean([right[i] for i in sorted(val)])), 4),
        "megabytes": round(Path(recognizer.path).stat().st_size / 1e6, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/runtime"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--single", type=int, default=500, help="images timed one at a time")
    parser.add_argument("--ddddocr-python")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    reference = Recognizer.load(args.model)
    folder = read_labelled_folder(args.data)
    samples = folder.samples[: args.images]
    recipe = reference.card.training.config  # the model's own split: its validation images
    _, val_split = split_samples(folder.samples, recipe["val_split"], recipe["seed"])
    val_names = {s.path.name for s in val_split}
    val = {i for i, s in enumerate(samples) if s.path.name in val_names}
    data = [s.path.read_bytes() for s in samples]
    labels = [s.label for s in samples]

    fp32 = export_onnx(args.model, args.out / "model.onnx")
    int8 = export_onnx(args.model, args.out / "model.int8.onnx", int8=True)
    calibration = reference.preprocessing([s.path for s in samples[:256]])
    qdq = static_int8(fp32, args.out / "model.qdq.onnx", calibration)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rows = {}
    for name, path in [("pytorch eager", args.model), ("onnx fp32", fp32),
                       ("onnx int8 (MatMul/LSTM, dynamic)", int8),
                       ("onnx int8 (Conv, static QDQ)", qdq)]:
        rows[name] = measure(Recognizer.load(path), data, labels, val, args.single)
        print(name, json.dumps(rows[name]), flush=True)
    if args.ddddocr_python:
        result = subprocess.run([args.ddddocr_python, "-c", DDDDOCR_SCRIPT], check=True,
                                input=json.dumps([str(s.path) for s in samples]),
                                capture_output=True, text=True)
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        right = [t == label for t, label in zip(answer["texts"], labels)]
        rows["ddddocr (zero-shot)"] = {
            "batch1_end_to_end": percentiles(answer["times"]),
            "batch64_images_per_s_end_to_end": round(len(data) / sum(answer["times"])),
            "accuracy_all": round(float(np.mean(right)), 4),
            "accuracy_validation": round(float(np.mean([right[i] for i in sorted(val)])), 4),
            "megabytes": round(answer["bytes"] / 1e6, 3),
        }
        print("ddddocr", json.dumps(rows["ddddocr (zero-shot)"]), flush=True)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                         f"{platform.processor() or platform.platform()}",
              "model": str(args.model), "data": str(args.data), "images": len(samples),
              "validation_images": len(val), "rows": rows}
    (args.out / "runtime.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
