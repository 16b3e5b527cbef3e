"""``evaluate`` and ``predict``: commands that read captchas with a model (torch-free with an
``.onnx`` model)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from captchalab.cli.options import (
    EXIT_ERROR,
    add_constraints,
    add_decoding,
    constraints,
    decoding,
    stderr,
)


def add(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate", help="measure a model on a labelled folder",
        description="Sequence (whole captcha) accuracy, the same case-folded, character "
        "accuracy, CER and speed of MODEL on DATA. Labels with symbols the model cannot "
        "produce are named, with the accuracy on the images whose labels it can read.")
    p.add_argument("model", type=Path, help="model file (.safetensors or exported .onnx)")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="write errors.csv and an errors.png gallery of mistakes here")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    add_decoding(p)
    add_constraints(p)
    p.set_defaults(run=run_evaluate)

    p = commands.add_parser(
        "predict", help="read captchas from images",
        description="Print 'path<TAB>text<TAB>confidence' per image (JSON lines with --json). "
        "PATH may be an image, a folder of images, or - for one image on standard input. "
        "Bad files are reported on stderr; the others are still read, and the exit code is 1.")
    p.add_argument("model", type=Path, help="model file (.safetensors or exported .onnx; an "
                   ".onnx file runs with onnxruntime alone, without PyTorch), or `base`: the "
                   "packaged base model, which reads with zero labels (case-folded)")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders of images, or - for standard input")
    p.add_argument("--json", action="store_true", help="JSON lines with per-character confidences")
    p.add_argument("--answer", action="store_true",
                   help="also print the answer of an arithmetic reading (7+3=? -> 10); on by "
                   "default for a model trained on arithmetic captchas")
    add_decoding(p)
    add_constraints(p)
    p.set_defaults(run=run_predict)


def run_evaluate(args: argparse.Namespace) -> int:
    from captchalab.evaluation import evaluate, write_report
    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    result = evaluate(recognizer, args.data, args.batch_size, decoding(args, recognizer),
                      skip_bad=args.skip_bad, show_progress=not args.json,
                      constraints=constraints(args))
    if args.report:
        write_report(result, args.report)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    m = result.metrics
    if recognizer.ordered:
        print(f"sequence accuracy {m['sequence_accuracy']:.2%} (case-folded "
              f"{m['sequence_accuracy_case_folded']:.2%})  character accuracy "
              f"{m['char_accuracy']:.2%}  CER {m['cer']:.4f}  images {m['count']}  "
              f"{m['images_per_second']:.0f} images/s")
    else:
        print(f"exact-set accuracy {m['exact_set_accuracy']:.2%}  per-label accuracy "
              f"{m['per_label_accuracy']:.2%}  images {m['count']}  "
              f"{m['images_per_second']:.0f} images/s  (multilabel: order not read)")
    if result.unknown_symbols:
        readable = result.readable_metrics
        stderr(f"captchalab: note: labels use symbols this model cannot produce: "
               f"{result.unknown_symbols!r} (its alphabet is {recognizer.alphabet.symbols!r}); "
               f"on the {readable['count']} images whose labels it can read: "
               f"{recognizer.reading.describe(readable)}")
    return 0


def _expand(paths: Sequence[str]) -> Iterator[tuple[str, object]]:
    """(name, source) per image to read; a source that is an Exception is reported as bad."""
    from captchalab.data import IMAGE_SUFFIXES

    for name in paths:
        if name == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(name)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield str(child), child
        elif path.is_file():
            yield name, path
        else:
            yield name, FileNotFoundError("no such file or folder")


def run_predict(args: argparse.Namespace) -> int:
    from captchalab.runtime import ImageFailure, Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    settings = decoding(args, recognizer)
    if not recognizer.ordered and not args.json:
        stderr(f"captchalab: note: {recognizer.family} models tell which characters are "
               "present, not their order; printing each present character with its probability")
    from captchalab.runtime.arithmetic import ExpressionError

    answers = args.answer or recognizer.card.reads == "expression"
    failed = 0
    pending: list[tuple[str, object]] = []

    def answer_of(name: str, reading) -> int | None:
        try:
            return reading.answer
        except ExpressionError as error:
            stderr(f"captchalab: note: {name}: no answer ({error})")
            return None

    def flush() -> None:
        nonlocal failed
        readings = recognizer.predict([source for _, source in pending], args.batch_size,
                                      settings, errors="return", allowed=args.allowed,
                                      length=args.length, case=args.case)
        for (name, _), reading in zip(pending, readings):
            if isinstance(reading, ImageFailure):  # one bad file must not stop the rest
                stderr(f"captchalab: error: {name}: {reading}")
                failed += 1
            elif args.json:
                row = {"path": name, **reading.to_dict()}
                if answers and "answer" not in row:
                    row["answer"] = answer_of(name, reading)
                print(json.dumps(row, ensure_ascii=False))
            elif reading.ordered:
                line = f"{name}\t{reading.text}\t{reading.confidence:.4f}"
                if answers:
                    value = answer_of(name, reading)
                    line += "\t" + ("" if value is None else str(value))
                print(line)
            else:
                present = " ".join(f"{c}:{p:.3f}" for c, p in
                                   zip(reading.characters, reading.char_confidences))
                print(f"{name}\t{{{present}}}\t{reading.confidence:.4f}")
        pending.clear()

    for name, source in _expand(args.paths):
        if isinstance(source, Exception):
            stderr(f"captchalab: error: {name}: {source}")
            failed += 1
            continue
        pending.append((name, source))
        if len(pending) >= args.batch_size:
            flush()
    flush()
    sys.stdout.flush()
    return EXIT_ERROR if failed else 0
