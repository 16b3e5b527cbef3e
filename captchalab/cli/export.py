"""``export``: a model file to ONNX for the torch-free runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from captchalab.cli.options import (
    EXIT_ERROR,
    CommandError,
    add_constraints,
    constraints,
    stderr,
)


def add(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export", help="export a model to ONNX for the torch-free runtime",
        description="Write MODEL as an ONNX file with dynamic batch size and the model's "
        "alphabet, preprocessing, family and decoding settings embedded, so the file alone is "
        "enough to predict (captchalab predict model.onnx ..., Recognizer.load('model.onnx'), "
        "captchalab serve model.onnx). With --check DATA, both models read DATA and the "
        "command fails unless they agree on at least 99.9% of images with confidences within "
        "1e-4 (int8 exports are reported, not held to that).")
    p.add_argument("model", type=Path, help="model file (.safetensors) written by train")
    p.add_argument("--out", type=Path, help="ONNX file (default: MODEL with .onnx, or "
                   ".int8.onnx with --int8)")
    p.add_argument("--int8", action="store_true",
                   help="int8 weights for the MatMul/Gemm/LSTM layers: a file about a third "
                   "smaller, the same readings; not faster on the CPUs measured (BENCHMARKS.md)")
    p.add_argument("--check", type=Path, metavar="DATA",
                   help="labelled folder to check the export against the source model")
    p.add_argument("--json", action="store_true", help="print the check as one JSON object")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ONNX file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_constraints(p, stored=True)
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from captchalab.export import check_parity, export_onnx
    from captchalab.reporting.progress import ProgressReporter
    from captchalab.runtime import Recognizer

    if args.model.suffix.lower() == ".onnx":
        raise CommandError(f"{args.model}: already an ONNX file; export a .safetensors model")
    out = args.out or args.model.with_suffix(".int8.onnx" if args.int8 else ".onnx")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out}: already exists; pass --overwrite to replace it")
    export_onnx(args.model, out, args.int8, constraints(args))
    size = out.stat().st_size / 1e6
    if args.check is None:
        print(f"wrote {out} ({size:.2f} MB)")
        return 0
    reference, exported = Recognizer.load(args.model), Recognizer.load(out)
    with ProgressReporter(not (args.quiet or args.json)).task("checking", None) as advance:
        report = check_parity(reference, exported, args.check,
                              progress=lambda done, total: advance(to=done, total=total))
    passed = report.passed()
    if args.json:
        print(json.dumps({"out": str(out), "megabytes": round(size, 3), "passed": passed,
                          **report.to_dict()}))
    else:
        print(f"wrote {out} ({size:.2f} MB); on {report.images} images of {args.check}: "
              f"same reading {report.same_reading:.2%}, largest confidence difference "
              f"{report.max_confidence_diff:.1e}, accuracy {report.reference_accuracy:.2%} "
              f"(source) vs {report.exported_accuracy:.2%} (ONNX)")
        if report.disagreements:
            print("readings differ on: " + ", ".join(report.disagreements))
    if passed or args.int8:
        return 0
    stderr(f"captchalab: error: {out}: parity check failed (needs >= 99.9% same readings and "
           "confidences within 1e-4)")
    return EXIT_ERROR
