"""Reading what sites ask for: arithmetic answers and Chinese characters, default recipe.

1. ``arithmetic``: train on N generated questions (seed 0), read M fresh ones (seed 1):
   the share of correct answers (``Prediction.answer``) and of correct question strings.
2. ``hanzi``: the same with four of 500 characters; then the ONNX reading speed of that
   model beside a 36-symbol model of the same input size (the hanzi scheme drawn with
   A-Z0-9, trained briefly: unsure, it sends more images to beam search), on the same
   preprocessed images; and the network alone with 500 and with 36 symbols
   (``--network-cost H,W`` measures only that), the alphabet's own cost.

    python benchmarks/presets_reading.py --out benchmarks/results_presets_reading.json \\
        --arithmetic 2000,1000 --hanzi 20000,1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from captchalab import Recognizer
from captchalab.data import read_labelled_folder
from captchalab.export.to_onnx import export_onnx
from captchalab.generators import generate, parse_scheme
from captchalab.runtime.arithmetic import ExpressionError, answer
from captchalab.training import TrainConfig, train

PRESETS = Path(__file__).resolve().parents[1] / "captchalab" / "generators" / "presets"


def trained(scheme, train_count: int, work: Path, config: TrainConfig) -> tuple[Path, dict]:
    """Generate, train with ``config`` and return the model file and the run's facts."""
    images = generate(scheme, train_count, work / "train", seed=0, workers=os.cpu_count() or 1)
    started = time.perf_counter()
    result = train(images, work / "run", config, log=lambda _: None, show_progress=False)
    return result.model_path, {"train_images": train_count, "epochs": result.epochs,
                               "steps": result.steps, "ended": result.ended,
                               "cycles": result.cycles, "max_minutes": config.max_minutes,
                               "train_minutes": round((time.perf_counter() - started) / 60, 2)}


def read_fresh(model_path: Path, scheme, count: int, work: Path) -> tuple[list, list[str]]:
    folder = generate(scheme, count, work / "test", seed=1, workers=os.cpu_count() or 1)
    reading = Recognizer.load(model_path).read_folder(folder)
    return reading.predictions, reading.truths


def arithmetic(train_count: int, test_count: int, work: Path, config: TrainConfig) -> dict:
    model, facts = trained("arithmetic", train_count, work, config)
    predictions, truths = read_fresh(model, "arithmetic", test_count, work)
    answers = 0
    for prediction, truth in zip(predictions, truths):
        with contextlib.suppress(ExpressionError):  # an unparsable reading is wrong
            answers += prediction.answer == answer(truth)
    strings = sum(p.text == t for p, t in zip(predictions, truths))
    # wrong strings that differ from the truth only in which multiplication sign they read
    signs = str.maketrans({"x": "×", "*": "×"})
    sign_only = sum(p.text != t and p.text.translate(signs) == t.translate(signs)
                    for p, t in zip(predictions, truths))
    wrong = [[t, p.text] for p, t in zip(predictions, truths) if p.text != t]
    return {**facts, "test_images": len(truths), "answers_correct": answers / len(truths),
            "strings_correct": strings / len(truths),
            "strings_wrong_only_in_the_multiplication_sign": sign_only,
            "wrong_readings": wrong[:200]}


def onnx_speed(model_path: Path, images: np.ndarray, repeats: int = 5) -> float:
    """Median seconds per image to read ``images`` (preprocessed) in batches of 64."""
    onnx = model_path.with_suffix(".onnx")
    export_onnx(model_path, onnx)
    model = Recognizer.load(onnx)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(images), 64):
            model.read(images[start : start + 64])
        times.append((time.perf_counter() - started) / len(images))
    return statistics.median(times)


def network_cost(height: int, width: int, classes: tuple[int, ...] = (501, 37),
                 rounds: int = 7) -> dict:
    """ms per image of the crnn network alone (ONNX, the default recipe's architecture,
    untrained: the cost does not depend on the weights) with each number of ``classes``, in
    batches of 64 and for one image: the alphabet's own cost, without decoding."""
    import onnxruntime as ort
    import torch

    from captchalab.data import Preprocessing
    from captchalab.export.to_onnx import _torch_to_onnx
    from captchalab.models import build
    from captchalab.runtime.onnx_backend import session_options

    pre = Preprocessing(height=height, width=width)
    batch = np.random.default_rng(0).normal(size=(64, 1, height, width)).astype(np.float32)
    costs = {}
    for count in classes:
        torch.manual_seed(0)
        network = build("crnn", num_classes=count, height=height, width=width,
                        sequence="none").eval()
        session = ort.InferenceSession(_torch_to_onnx(network, pre), session_options(),
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for size in (64, 1):
            feed = {name: batch[:size]}
            session.run(None, feed)
            times = []
            for _ in range(rounds * (64 // size)):
                started = time.perf_counter()
                session.run(None, feed)
                times.append((time.perf_counter() - started) / size)
            costs[f"{count - 1}_symbols_ms_batch{size}"] = round(statistics.median(times) * 1e3,
                                                                 4)
    return costs


def hanzi(train_count: int, test_count: int, work: Path, config: TrainConfig) -> dict:
    model, facts = trained("hanzi", train_count, work / "hanzi", config)
    predictions, truths = read_fresh(model, "hanzi", test_count, work / "hanzi")
    accuracy = sum(p.text == t for p, t in zip(predictions, truths)) / len(truths)
    # the same drawing with 36 symbols: a model of the same input size, trained briefly
    text = (PRESETS / "hanzi.toml").read_text(encoding="utf-8")
    text = re.sub(r'alphabet = """.*?"""', 'alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"',
                  text, flags=re.S).replace('name = "hanzi"', 'name = "hanzi36"')
    latin, _ = trained(parse_scheme(text, "hanzi36.toml", PRESETS), 500, work / "latin",
                       TrainConfig(epochs=1))
    recognizer = Recognizer.load(model)
    paths = [s.path for s in read_labelled_folder(work / "hanzi" / "test").samples[:512]]
    images = np.stack([recognizer.prepare(p) for p in paths])
    assert Recognizer.load(latin).prepare(paths[0]).shape == images[0].shape
    hanzi_speed, latin_speed = onnx_speed(model, images), onnx_speed(latin, images)
    return {**facts, "symbols": len(recognizer.alphabet.symbols), "test_images": len(truths),
            "sequence_accuracy": accuracy, "input": list(images.shape[1:]),
            "onnx_ms_per_image_batch64": round(hanzi_speed * 1e3, 4),
            "onnx_ms_per_image_36_symbols": round(latin_speed * 1e3, 4),
            "slowdown": round(hanzi_speed / latin_speed, 3),
            "network_alone": network_cost(*images.shape[1:])}


def counts(text: str) -> tuple[int, int]:
    train_count, test_count = (int(n) for n in text.split(","))
    return train_count, test_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_presets_reading.json"))
    parser.add_argument("--arithmetic", type=counts, metavar="TRAIN,TEST")
    parser.add_argument("--hanzi", type=counts, metavar="TRAIN,TEST")
    parser.add_argument("--epochs", type=int, help="instead of the default recipe's (a trial)")
    parser.add_argument("--network-cost", type=counts, metavar="HEIGHT,WIDTH",
                        help="only the network's cost with 500 and 36 symbols at this input")
    parser.add_argument("--max-minutes", type=float,
                        help="the training budget, instead of the default recipe's")
    args = parser.parse_args()
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    budget = {"max_minutes": args.max_minutes} if args.max_minutes else {}
    if args.network_cost:
        report["network_cost"] = {**network_cost(*args.network_cost),
                                  "input": list(args.network_cost),
                                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
        print("network_cost", json.dumps(report["network_cost"]), flush=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    with tempfile.TemporaryDirectory() as work:
        for name, task in (("arithmetic", arithmetic), ("hanzi", hanzi)):
            if getattr(args, name):
                report[name] = task(*getattr(args, name), Path(work) / name,
                                    TrainConfig(epochs=args.epochs, **budget))
                report[name]["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                report[name]["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
                print(name, json.dumps(report[name]), flush=True)
                args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
