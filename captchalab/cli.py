"""``captchalab`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from captchalab import __version__
from captchalab.data import IMAGE_SUFFIXES, DatasetError
from captchalab.runtime.artifact import ModelFileError

EXIT_ERROR = 1


class CommandError(Exception):
    """A fatal problem reported to the user as one line."""


def _add_train(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.trainer import TrainConfig

    defaults = TrainConfig()
    p = commands.add_parser(
        "train", help="train a recognizer on a folder of labelled captchas",
        description="Train a recognizer on DATA, a folder of images named by their label "
        "(226md.png, 226md_2.png) or listed in labels.csv/labels.txt. OUT receives "
        "model.safetensors (the best model by validation accuracy), metrics.jsonl, curves.png "
        "and a checkpoint for --resume.")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", default=defaults.model, help="model family (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="epochs (default: about 3000 optimiser steps' worth)")
    p.add_argument("--max-minutes", type=float,
                   help="time budget; the learning-rate schedule is fitted into it")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate, help="peak learning rate")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    p.add_argument("--val-split", type=float, default=defaults.val_split,
                   help="share of images held out for validation (default: %(default)s)")
    p.add_argument("--height", type=int, default=defaults.height,
                   help="input height in pixels; width keeps the images' aspect ratio")
    p.add_argument("--alphabet", help="allowed symbols (default: inferred from the labels)")
    p.add_argument("--case-insensitive", action="store_true", help="fold labels to lower case")
    p.add_argument("--skip-bad", action="store_true", help="train on the good files, skip bad ones")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already in OUT (without it, an existing model is kept)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=("greedy", "beam"),
                   help="CTC decoding (default: the model file's setting)")
    p.add_argument("--beam-width", type=int, help="beam width for --decoder beam")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captchalab",
        description="Train, evaluate and run recognizers for text captchas.")
    parser.add_argument("--version", action="version", version=f"captchalab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)

    p = commands.add_parser(
        "evaluate", help="measure a model on a labelled folder",
        description="Sequence (whole captcha) accuracy, character accuracy, CER and speed of "
        "MODEL on DATA.")
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="write errors.csv and an errors.png gallery of mistakes here")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    _add_decoding(p)

    p = commands.add_parser(
        "predict", help="read captchas from images",
        description="Print 'path<TAB>text<TAB>confidence' per image (JSON lines with --json). "
        "PATH may be an image, a folder of images, or - for one image on standard input. "
        "Bad files are reported on stderr; the others are still read, and the exit code is 1.")
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="JSON lines with per-character confidences")
    _add_decoding(p)

    p = commands.add_parser(
        "generate", help="write synthetic labelled captchas",
        description="Write COUNT images <label>_<n>.png of a built-in SCHEME into OUT, with "
        "annotations.jsonl (each character's centre and box).")
    p.add_argument("scheme", help="built-in scheme: rings")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _decoding(args: argparse.Namespace, recognizer):
    from dataclasses import replace

    settings = recognizer.decoding
    if args.decoder:
        settings = replace(settings, method=args.decoder)
    if args.beam_width:
        settings = replace(settings, beam_width=args.beam_width)
    return settings


def run_train(args: argparse.Namespace) -> int:
    from captchalab.training import TrainConfig, train

    config = TrainConfig(
        model=args.model, epochs=args.epochs, max_minutes=args.max_minutes,
        batch_size=args.batch_size, learning_rate=args.lr, val_split=args.val_split,
        seed=args.seed, device=args.device, height=args.height, alphabet=args.alphabet,
        case_insensitive=args.case_insensitive, skip_bad=args.skip_bad, resume=args.resume,
        overwrite=args.overwrite, augment=not args.no_augment)
    result = train(args.data, args.out, config, log=_stderr, show_progress=not args.quiet)
    metrics = result.metrics
    if metrics:
        print(f"validation: {metrics['sequence_accuracy']:.2%} of captchas, "
              f"{metrics['char_accuracy']:.2%} of characters ({metrics['count']} images); "
              f"{result.epochs} epochs in {result.minutes:.1f} min -> {result.model_path}")
    else:
        print(f"{result.epochs} epochs in {result.minutes:.1f} min -> {result.model_path}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from captchalab.evaluation import evaluate, write_report
    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    result = evaluate(recognizer, args.data, args.batch_size, _decoding(args, recognizer),
                      skip_bad=args.skip_bad, show_progress=not args.json)
    if args.report:
        write_report(result, args.report)
    m = result.metrics
    if args.json:
        print(json.dumps(m))
    else:
        print(f"sequence accuracy {m['sequence_accuracy']:.2%}  character accuracy "
              f"{m['char_accuracy']:.2%}  CER {m['cer']:.4f}  images {m['count']}  "
              f"{m['images_per_second']:.0f} images/s")
    return 0


def _expand(paths: Sequence[str]) -> Iterator[tuple[str, object]]:
    """(name, source) per image to read; a source that is an Exception is reported as bad."""
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
    import numpy as np

    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    settings = _decoding(args, recognizer)
    failed = 0
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        pixels = np.stack([array for _, array in pending])
        for (name, _), prediction in zip(pending, recognizer.predict_pixels(pixels, settings)):
            if args.json:
                print(json.dumps({"path": name, **prediction.to_dict()}))
            else:
                print(f"{name}\t{prediction.text}\t{prediction.confidence:.4f}")
        pending.clear()

    for name, source in _expand(args.paths):
        if isinstance(source, Exception):
            _stderr(f"captchalab: error: {name}: {source}")
            failed += 1
            continue
        try:
            pending.append((name, recognizer.preprocessing.load(source)))
        except Exception as error:  # any decoding failure of one file must not stop the rest
            _stderr(f"captchalab: error: {name}: unreadable image ({type(error).__name__})")
            failed += 1
            continue
        if len(pending) >= args.batch_size:
            flush()
    flush()
    sys.stdout.flush()
    return EXIT_ERROR if failed else 0


def run_generate(args: argparse.Namespace) -> int:
    from captchalab.generators import generate
    from captchalab.training.progress import ProgressReporter

    with ProgressReporter(not args.quiet).task(f"generating {args.scheme}", args.count) as advance:
        out = generate(args.scheme, args.count, args.out, args.seed, advance)
    print(f"wrote {args.count} {args.scheme} captchas to {out}")
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


COMMANDS = {"train": run_train, "evaluate": run_evaluate, "predict": run_predict,
            "generate": run_generate}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (DatasetError, ModelFileError, FileNotFoundError, ValueError) as error:
        _stderr(f"captchalab: error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _stderr("captchalab: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
