"""Where the time of reading goes: each stage of ``Recognizer.predict`` from image bytes, timed.

The stages are the ones ``predict`` runs, called one by one on the same encoded images:
decode (Pillow open + load), grey, resize, the uint8 array, normalise, the network
(onnxruntime) and CTC decoding with confidences. The end-to-end ``predict`` is timed beside
them, in batches of 64 and one image at a time, so the stages can be checked against it.
Then onnxruntime's session options (threads, execution mode, optimisation level) on the
network alone, and whether the optimised graph still holds BatchNormalization nodes.

    python benchmarks/reading_profile.py \\
        --model benchmarks/runs/shared_redesign/captcha_v2/model.safetensors \\
        --data ../shared/datasets/captcha_v2/images --out benchmarks/runs/profile.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from captchalab import Recognizer
from captchalab.data import read_labelled_folder, to_grey
from captchalab.data.preprocess import open_image
from captchalab.export import export_onnx


def timed(task, rounds: int) -> float:
    """Median seconds of ``task()`` over ``rounds`` (after one warm-up call)."""
    task()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        task()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stages(model: Recognizer, data: list[bytes], rounds: int) -> dict[str, float]:
    """Milliseconds per image of each stage over ``data`` in batches of 64."""
    pre = model.preprocessing
    decoded = [open_image(d) for d in data]
    greys = [to_grey(im, pre.background, pre.grey) for im in decoded]
    resized = [g.resize((pre.width, pre.height), Image.Resampling.BILINEAR) for g in greys]
    pixels = np.stack([np.asarray(r, dtype=np.uint8) for r in resized])
    batches = [pixels[i : i + 64] for i in range(0, len(pixels), 64)]
    normalised = [pre.normalize(b) for b in batches]
    outputs = [model.backend(b) for b in normalised]

    def decode_images():
        for d in data:
            with Image.open(io.BytesIO(d)) as image:
                image.load()

    parts = {
        "decode": decode_images,
        "grey": lambda: [to_grey(im, pre.background, pre.grey) for im in decoded],
        "resize": lambda: [g.resize((pre.width, pre.height), Image.Resampling.BILINEAR)
                           for g in greys],
        "to_array": lambda: np.stack([np.asarray(r, dtype=np.uint8) for r in resized]),
        "normalise": lambda: [pre.normalize(b) for b in batches],
        "network": lambda: [model.backend(b) for b in normalised],
        "ctc_decoding": lambda: [model.decode(o) for o in outputs],
        "predict_end_to_end": lambda: model.predict(data, batch_size=64),
    }
    return {name: round(timed(task, rounds) / len(data) * 1e3, 4) for name, task in parts.items()}


def single(model: Recognizer, data: list[bytes]) -> dict[str, float]:
    """p50/p90 milliseconds of ``predict`` on one image, and of the network on one."""
    batch = model.preprocessing.normalize(model.prepare(data[0])[None])
    for d in data[:20]:
        model.predict(d)
    ends, nets = [], []
    for d in data:
        started = time.perf_counter()
        model.predict(d)
        ends.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.backend(batch)
        nets.append(time.perf_counter() - started)
    ms = lambda values, q: round(float(np.percentile(values, q)) * 1e3, 4)  # noqa: E731
    return {"predict_p50": ms(ends, 50), "predict_p90": ms(ends, 90),
            "network_p50": ms(nets, 50), "network_p90": ms(nets, 90)}


def session_choices(onnx: Path, batch: np.ndarray, one: np.ndarray, rounds: int) -> list[dict]:
    """The network alone under each onnxruntime setting: ms per image at 64, ms for one."""
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    modes = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
             "parallel": ort.ExecutionMode.ORT_PARALLEL}
    rows = []
    for threads in (0, 1, 2):
        for mode in modes:
            for level in levels:
                options = ort.SessionOptions()
                options.graph_optimization_level = levels[level]
                options.execution_mode = modes[mode]
                options.log_severity_level = 3
                if threads:
                    options.intra_op_num_threads = threads
                session = ort.InferenceSession(str(onnx), options,
                                               providers=["CPUExecutionProvider"])
                feeds = {session.get_inputs()[0].name: batch}, {session.get_inputs()[0].name: one}
                at64 = timed(lambda s=session, f=feeds[0]: s.run(None, f), rounds)
                at1 = timed(lambda s=session, f=feeds[1]: s.run(None, f), rounds * 20)
                rows.append({"intra_op_threads": threads or "default", "mode": mode,
                             "optimisation": level, "ms_per_image_batch64":
                             round(at64 / len(batch) * 1e3, 4), "ms_batch1": round(at1 * 1e3, 4)})
    return rows


def batch_norm_left(onnx: Path) -> dict[str, int]:
    """BatchNormalization nodes in the exported graph and in onnxruntime's optimised one."""
    import onnx as onnx_lib
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as work:
        optimised = Path(work) / "optimised.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        count = lambda path: sum(n.op_type == "BatchNormalization"  # noqa: E731
                                 for n in onnx_lib.load(str(path)).graph.node)
        return {"exported": count(onnx), "optimised": count(optimised)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help=".safetensors or .onnx")
    parser.add_argument("--data", type=Path, required=True, help="labelled folder of images")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/profile.json"))
    args = parser.parse_args()
    onnx = args.model
    if onnx.suffix != ".onnx":
        onnx = args.out.with_suffix(".onnx")
        export_onnx(args.model, onnx)
    model = Recognizer.load(onnx)
    samples = read_labelled_folder(args.data).samples[: args.images]
    data = [s.path.read_bytes() for s in samples]
    pixels = np.stack([model.prepare(d) for d in data[:64]])
    batch = model.preprocessing.normalize(pixels)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": str(args.model), "images": len(data),
        "ms_per_image_batch64": stages(model, data, args.rounds),
        "single_image": single(model, data),
        "batch_norm_nodes": batch_norm_left(onnx),
        "session_options": session_choices(onnx, batch, batch[:1], args.rounds),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ms_per_image_batch64", "single_image",
                                             "batch_norm_nodes")}, indent=2))
    for row in report["session_options"]:
        print(row)


if __name__ == "__main__":
    main()
