"""``captchalab`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from captchalab import __version__
from captchalab.data import IMAGE_SUFFIXES, DatasetError
from captchalab.data.annotations import ANNOTATIONS_FILE
from captchalab.runtime.artifact import ModelFileError

EXIT_ERROR = 1


class CommandError(Exception):
    """A fatal problem reported to the user as one line."""


FAMILY_HELP = ("model family: crnn (CRNN + CTC, any length; default), multihead and "
               "multihead-spatial (one softmax per position, fixed length), slice (one shared "
               "classifier per slice, fixed length), heatmap (character-centre maps; needs "
               "centres), multilabel (which characters are present, no order)")


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def _bounded(kind: type, what: str, low: float, high: float | None = None,
             low_open: bool = False):
    """An argparse type: a number of ``kind`` within [low, high) (or (low, ...) if open)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (value <= low if low_open else value < low) or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


POSITIVE_INT = _bounded(int, "a whole number of at least 1", 1)
COUNT = _bounded(int, "a whole number of at least 0", 0)
POSITIVE = _bounded(float, "a number above 0", 0, low_open=True)
NON_NEGATIVE = _bounded(float, "a number of at least 0", 0)
FRACTION = _bounded(float, "a fraction from 0 up to (not including) 1", 0, 1)
HEIGHT = _bounded(int, "a height of at least 16 pixels", 16)
PORT = _bounded(int, "a port from 0 to 65535", 0, 65536)


def _counts(text: str) -> list[int]:
    values = [POSITIVE_INT(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_training_options(p: argparse.ArgumentParser, defaults) -> None:
    """Options shared by ``train`` and ``compare``."""
    from captchalab.training.config import TARGET_STEPS

    p.add_argument("--epochs", type=POSITIVE_INT,
                   help=f"epochs (default: about {TARGET_STEPS} optimiser steps' worth, twice "
                        "that for the multihead families)")
    p.add_argument("--max-minutes", type=POSITIVE,
                   help="time budget; the learning-rate schedule is fitted into it")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=defaults.batch_size)
    p.add_argument("--lr", type=POSITIVE, default=defaults.learning_rate, help="peak learning rate")
    p.add_argument("--seed", type=COUNT, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    p.add_argument("--val-split", type=FRACTION, default=defaults.val_split,
                   help="share of images held out for validation (default: %(default)s)")
    p.add_argument("--height", type=HEIGHT, default=defaults.height,
                   help="input height in pixels; width keeps the images' aspect ratio")
    p.add_argument("--invert", action="store_true",
                   help="light text on a dark page: invert the images first (stored in the "
                   "model, so prediction does it too)")
    p.add_argument("--deskew", action="store_true",
                   help="level each image's text along its least-squares midline and crop to "
                   "a band of normalised text height (seed 002; stored in the model)")
    p.add_argument("--alphabet", help="allowed symbols (default: inferred from the labels)")
    p.add_argument("--case-insensitive", action="store_true", help="fold labels to lower case")
    p.add_argument("--skip-bad", action="store_true", help="train on the good files, skip bad ones")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already in OUT (without it, an existing model is kept)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--slices", type=_numbers, metavar="X1,X2,...",
                   help="slice family: boundaries in pixels of the original images "
                   "(default: equal slices), e.g. 54,110,170,215,262")
    p.add_argument("--centres", metavar="FILE",
                   help=f"heatmap family: centres file (default: DATA/{ANNOTATIONS_FILE})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.config import PRETRAIN_STEPS, TrainConfig

    defaults = TrainConfig()
    p = commands.add_parser(
        "train", help="train a recognizer on a folder of labelled captchas",
        description="Train a recognizer on DATA, a folder of images named by their label "
        "(226md.png, 226md_2.png) or listed in labels.csv/labels.txt. OUT receives "
        "model.safetensors (the best model by validation accuracy), metrics.jsonl, curves.png "
        "and a checkpoint for --resume.")
    p.add_argument("data", type=Path, nargs="?",
                   help="folder of labelled images (or none, with --scheme)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", help=FAMILY_HELP + f" (default: {defaults.model}, or the family "
                   "of --init)")
    _add_training_options(p, defaults)
    group = p.add_argument_group("starting from another model (few labels)")
    group.add_argument("--pretrain", metavar="SCHEME",
                       help="first pretrain on synthetic captchas of SCHEME (a built-in name "
                       "or a .toml file) drawn with DATA's symbols and size, then fine-tune "
                       "on DATA; the pretrained model is cached and reused")
    group.add_argument("--pretrain-steps", type=POSITIVE_INT, default=PRETRAIN_STEPS, metavar="N",
                       help="optimiser steps of pretraining (default: %(default)s)")
    group.add_argument("--scheme", metavar="SCHEME",
                       help="train on synthetic captchas of SCHEME drawn on the fly, no DATA "
                       "(fresh images every epoch)")
    group.add_argument("--init", type=Path, metavar="MODEL",
                       help="start from this model file's weights and preprocessing; its "
                       "alphabet may differ (shared symbols carry over, new ones start fresh)")
    group.add_argument("--freeze-epochs", type=COUNT, default=defaults.freeze_epochs,
                       metavar="N", help="keep the backbone fixed for the first N epochs")
    group.add_argument("--backbone-lr", type=POSITIVE, default=defaults.backbone_lr, metavar="F",
                       help="the backbone's learning rate as a fraction of --lr (e.g. 0.1)")
    group = p.add_argument_group(
        "staged restarts (seed 002)",
        "Against unlucky starts: train N1 runs from seeds SEED, SEED+1, ... to the first "
        "stage's epoch, keep the N2 with the lowest validation loss, continue them, and so "
        "on; the last stage trains to the full schedule and its best run is the model. Each "
        "run follows the full schedule and is paused between stages, not restarted. OUT "
        "gets the winner's model and curves, restarts.json (each stage's runs and the "
        "spread between seeds) and restarts.png (every run's curves on one plot); the runs "
        "are kept in OUT/restarts/seed-N/.")
    group.add_argument("--restarts", type=_counts, metavar="N1,N2,...",
                       help="runs in each stage, e.g. 20,10,1")
    group.add_argument("--restart-epochs", type=_counts, metavar="E1,E2,...",
                       help="the epoch each stage but the last ends at, e.g. 10,100 (default: "
                       "each stage ends at twice the previous one's epoch, the last at the "
                       "full schedule)")
    group = p.add_argument_group(
        "self-training (seed 002)",
        "Read unlabelled images with the model, add the readings it is sure of to the "
        "training set, retrain with the same recipe, and repeat. Each round is checked on "
        "DATA's held-out validation images (labelled by people, never pseudo-labelled) and "
        "the rounds stop when that accuracy drops; the best round's model goes to OUT, "
        "every round to OUT/round-N/, the record to OUT/self_training.json.")
    group.add_argument("--unlabelled", type=Path, metavar="DIR",
                       help="folder of unlabelled images of the same scheme")
    group.add_argument("--pseudo-threshold", type=FRACTION, default=0.9, metavar="P",
                       help="confidence (P of the whole reading) a pseudo-label needs "
                       "(default: %(default)s)")
    group.add_argument("--self-training-rounds", type=POSITIVE_INT, default=3, metavar="N",
                       help="rounds of pseudo-labelling at most (default: %(default)s)")


def _add_compare(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.config import COMPARE_MODELS, TrainConfig

    p = commands.add_parser(
        "compare", help="train several model families on the same split and compare them",
        description="Train each family in --models on DATA with the same split and budget, "
        "then write OUT/compare.md, compare.json and compare.png: accuracy (the best "
        "epoch's, beside the last epoch's), character accuracy, training time, parameters, "
        "file size and CPU images/s. Each model is kept "
        "in OUT/<family>/. A heatmap on a folder without centres trains on centres derived "
        "from the crnn's alignment.")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--models", type=_names, default=",".join(COMPARE_MODELS),
                   help="comma-separated families (default: %(default)s)")
    _add_training_options(p, TrainConfig())


def _add_audit(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.config import AUDIT_MINUTES, AUDIT_SIZES, AUDIT_VAL_SPLIT

    p = commands.add_parser(
        "audit", help="how many labelled captchas break this scheme: a learning curve",
        description="Train the default recipe on growing subsets of DATA (the same validation "
        "images for every run, several seeds for small subsets) and write OUT/audit.md, "
        "audit.json and audit.png: accuracy against the number of labels, the labels needed "
        "for 50/90/99%% of whole captchas, the most confused characters and a verdict.")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, help="output folder (default: audit_<DATA name>)")
    p.add_argument("--sizes", default=AUDIT_SIZES,
                   help="training subset sizes, 'all' for every training image "
                   "(default: %(default)s)")
    p.add_argument("--seeds", type=POSITIVE_INT, default=3,
                   help="runs per size below 200 labels (default: %(default)s)")
    p.add_argument("--max-minutes", type=POSITIVE, default=AUDIT_MINUTES,
                   help="training budget of the whole audit, shared out by subset size "
                   "(default: %(default)s; pretraining comes on top, once, then is cached)")
    p.add_argument("--pretrain", metavar="SCHEME_OR_MODEL",
                   help="start every run from a model file, or from a model pretrained on "
                   "this synthetic scheme (built-in name or .toml)")
    p.add_argument("--model", default="crnn", help=FAMILY_HELP)
    p.add_argument("--val-split", type=FRACTION, default=AUDIT_VAL_SPLIT,
                   help="share of images held out for validation (default: %(default)s)")
    p.add_argument("--seed", type=COUNT, default=0, help="seed of the split and the subsets")
    p.add_argument("--height", type=HEIGHT, help="input height in pixels")
    p.add_argument("--case-insensitive", action="store_true", help="fold labels to lower case")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing audit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export", help="export a model to ONNX for the torch-free runtime",
        description="Write MODEL as an ONNX file with dynamic batch size and the model's "
        "alphabet, preprocessing, family and decoding settings embedded, so the file alone is "
        "enough to predict (captchalab predict model.onnx ..., Recognizer.load('model.onnx'), "
        "captchalab serve model.onnx). With --check DATA, both models read DATA and the "
        "command fails unless they agree on at least 99.9%% of images with confidences within "
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


def _add_serve(commands: argparse._SubParsersAction) -> None:
    from captchalab.service.limits import Limits

    limits = Limits()
    p = commands.add_parser(
        "serve", help="serve models over HTTP, with a try-it page and a labelling page",
        description="Serve MODELs (.onnx or .safetensors) over HTTP: POST /v1/recognize, "
        "GET /v1/models, GET /healthz, OpenAPI docs at /docs, a page to try a model at /, "
        "and with --label-dir a page to label captchas at /label. Concurrent requests are "
        "batched together.")
    p.add_argument("models", nargs="+", metavar="MODEL[=NAME]",
                   help="model file, optionally named (default name: the file's stem); the "
                   "first is the default model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=PORT, default=8000)
    p.add_argument("--workers", type=POSITIVE_INT, default=1, help="server processes")
    p.add_argument("--threads", type=POSITIVE_INT, help="inference threads per worker (default: "
                   "CPU cores / workers)")
    p.add_argument("--label-dir", type=Path, metavar="UNLABELLED",
                   help="folder of images to label on /label, least confident first")
    p.add_argument("--labelled-dir", type=Path, metavar="OUT",
                   help="where /label saves <label>.png (never overwriting: _1, _2, ...)")
    p.add_argument("--max-image-bytes", type=POSITIVE_INT, default=limits.max_image_bytes)
    p.add_argument("--max-request-bytes", type=POSITIVE_INT, default=limits.max_request_bytes)
    p.add_argument("--max-pixels", type=POSITIVE_INT, default=limits.max_pixels,
                   help="largest width x height accepted (default %(default)s)")
    p.add_argument("--max-batch", type=POSITIVE_INT, default=limits.max_batch,
                   help="images per request and per forward pass (default %(default)s)")
    p.add_argument("--batch-wait-ms", type=NON_NEGATIVE, default=limits.batch_wait * 1000,
                   help="how long a forward pass waits for more requests (default %(default)s)")
    p.add_argument("--client-timeout", type=POSITIVE, default=limits.client_timeout,
                   metavar="SECONDS", help="a request's headers, and then its body, must "
                   "arrive within this time or it is answered 408 (default %(default)s)")
    p.add_argument("--max-connections", type=POSITIVE_INT, default=limits.max_connections,
                   help="open connections at once; more are answered 503 (default "
                   "%(default)s)")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=("greedy", "beam"),
                   help="CTC decoding, crnn only (default: the model file's setting)")
    p.add_argument("--beam-width", type=POSITIVE_INT, help="beam width for --decoder beam")
    p.add_argument("--threshold", type=float,
                   help="detection threshold, heatmap and multilabel only (default: the one "
                   "tuned on the validation set)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=64)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captchalab",
        description="Train, evaluate and run recognizers for text captchas.")
    parser.add_argument("--version", action="version", version=f"captchalab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_compare(commands)
    _add_audit(commands)

    p = commands.add_parser(
        "evaluate", help="measure a model on a labelled folder",
        description="Sequence (whole captcha) accuracy, character accuracy, CER and speed of "
        "MODEL on DATA.")
    p.add_argument("model", type=Path, help="model file (.safetensors or exported .onnx)")
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
    p.add_argument("model", type=Path, help="model file (.safetensors or exported .onnx; an "
                   ".onnx file runs with onnxruntime alone, without PyTorch)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="JSON lines with per-character confidences")
    _add_decoding(p)

    _add_export(commands)
    _add_serve(commands)

    p = commands.add_parser(
        "generate", help="write synthetic labelled captchas",
        description="Write COUNT images <label>_<n>.png of SCHEME into OUT, with "
        "annotations.jsonl (each character's centre and box). SCHEME is a built-in preset "
        "or a scheme TOML file (see README, 'Synthetic schemes'). The same seed gives the "
        "same files for any number of workers.")
    from os import cpu_count

    from captchalab.generators.scheme import schemes

    p.add_argument("scheme", help=f"built-in ({', '.join(schemes())}) or a .toml file")
    p.add_argument("--count", type=POSITIVE_INT, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=COUNT, default=0)
    p.add_argument("--workers", type=POSITIVE_INT, default=cpu_count() or 1,
                   help="processes drawing images (default: the number of CPUs, %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser(
        "annotate-centres", help="derive character centres from string labels with a crnn",
        description="Align each image's known label to the output frames of MODEL (a crnn) "
        f"and write every character's centre to DATA/{ANNOTATIONS_FILE} (or --out), the file "
        "the heatmap family trains on.")
    p.add_argument("model", type=Path, help="crnn model file (.safetensors)")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, help=f"annotations file (default: DATA/{ANNOTATIONS_FILE})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_analyze(commands)
    return parser


def _add_out_folder(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("."),
                   help="output folder (default: the current one)")


def _add_analyze(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "analyze", help="look inside a trained model (writes PNG + JSON)",
        description="Analyses of seed 002; each writes a PNG and a JSON file into --out.")
    kinds = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    r = kinds.add_parser(
        "receptive-field", help="what one output position can see",
        description="Seed 002's measurement: with every convolution weight constant and "
        "biases zero, the weight each input pixel has for one output position of the shared "
        "backbone. Reports its Gaussian width and support beside the theoretical receptive "
        "field and, with --data, whether one output position can see a whole character.")
    r.add_argument("model", type=Path, help="model file (.safetensors)")
    r.add_argument("--data", type=Path, help="labelled folder to measure the typical glyph "
                   "width on (input width / median label length)")
    _add_out_folder(r)
    e = kinds.add_parser(
        "errors", help="most wrong and most right readings, character confusions",
        description="Read DATA with MODEL and write most_wrong.png (wrong readings the model "
        "was surest of), most_right.png (right readings it was surest of), confusion.png "
        "(which character is read as which, over least-edit alignments; families that read "
        "order) and errors.json.")
    e.add_argument("model", type=Path, help="model file (.safetensors or .onnx)")
    e.add_argument("data", type=Path, help="folder of labelled images")
    _add_out_folder(e)
    e.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    e.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    s = kinds.add_parser(
        "saliency", help="which input pixels the model reads each character from",
        description="Seed 002's input minimisation: starting from IMAGE, with the weights "
        "fixed, lower the image's ink while keeping each recognised character's output (its "
        "centre map, or its log-probability at its position) close to its value on IMAGE: "
        "loss = |F(X) - F(IMAGE)|^2 + C * sum(X). Writes saliency.png (the original beside "
        "the minimised image, per character) and saliency.json.")
    s.add_argument("model", type=Path, help="model file (.safetensors)")
    s.add_argument("image", type=Path, help="a captcha image")
    s.add_argument("--c", type=POSITIVE, default=0.1,
                   help="weight of the total ink (default: %(default)s, as in seed 002)")
    s.add_argument("--steps", type=POSITIVE_INT, default=300,
                   help="gradient steps (default: %(default)s)")
    _add_out_folder(s)


def run_analyze(args: argparse.Namespace) -> int:
    return {"receptive-field": _analyze_receptive_field,
            "errors": _analyze_errors, "saliency": _analyze_saliency}[args.analysis](args)


def _analyze_saliency(args: argparse.Namespace) -> int:
    from captchalab.analysis.saliency import saliency, write_saliency

    _layers_needed(args.model, "saliency")
    result = saliency(args.model, args.image, args.c, args.steps)
    out = write_saliency(result, args.out)
    for character in result.characters:
        kept = character.ink_after / max(character.ink_before, 1e-9)
        print(f"{character.symbol}: {kept:.1%} of the ink kept, output "
              f"{character.output_before:.3f} -> {character.output_after:.3f}")
    if not result.characters:
        print(f"nothing recognised in {args.image}: no character to explain")
    print(f"read {result.reading!r}; wrote {out / 'saliency.png'} and saliency.json")
    return 0


def _layers_needed(model: Path, analysis: str) -> None:
    if model.suffix.lower() == ".onnx":
        raise CommandError(f"{model}: {analysis} reads the network's layers; give the "
                           ".safetensors model it was exported from")


def _analyze_errors(args: argparse.Namespace) -> int:
    from captchalab.analysis.errors import write_error_analysis
    from captchalab.evaluation import evaluate
    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    result = evaluate(recognizer, args.data, skip_bad=args.skip_bad)
    write_error_analysis(result, recognizer.alphabet.symbols, args.out)
    wrong = len(result.mistakes())
    print(f"{wrong} of {len(result.paths)} read wrong; wrote most_wrong.png, most_right.png"
          + (", confusion.png" if recognizer.ordered else "") + f" and errors.json to "
          f"{args.out}")
    return 0


def _analyze_receptive_field(args: argparse.Namespace) -> int:
    from captchalab.analysis import receptive_field_report, write_receptive_field

    _layers_needed(args.model, "receptive-field")
    report, field = receptive_field_report(args.model, args.data)
    out = write_receptive_field(report, field, args.out)
    x = report["x"]
    print(f"receptive field along x: theoretical {x['theoretical']} px, measured support "
          f"{x['support']} px, Gaussian sigma {x['gaussian_sigma']} px (fit R² "
          f"{x['gaussian_fit']}), half-maximum width {report['half_maximum_width_x']} px, "
          f"sum of kernel sizes {report['kernel_sum']} px")
    if "glyph_width" in report:
        sees = report["sees_whole_glyph"]
        print(f"typical glyph {report['glyph_width']} px wide: one output position "
              + ("sees a whole character" if sees["effective"] else
                 "can reach a whole character but weighs mostly its centre"
                 if sees["theoretical"] else "cannot see a whole character"))
    print(f"wrote {out / 'receptive_field.png'} and receptive_field.json")
    return 0


def _decoding(args: argparse.Namespace, recognizer):
    """The model file's decoding settings with the user's overrides, checked against the family."""
    from dataclasses import replace

    settings = recognizer.decoding
    decoder = recognizer.decoder
    if (args.decoder or args.beam_width) and decoder.name != "ctc":
        raise CommandError(f"{recognizer.path}: --decoder and --beam-width apply to CTC models "
                           f"(crnn); this is a {recognizer.family} model")
    if args.threshold is not None and not decoder.thresholded:
        raise CommandError(f"{recognizer.path}: --threshold applies to heatmap and multilabel "
                           f"models; this is a {recognizer.family} model")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise CommandError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.decoder:
        settings = replace(settings, method=args.decoder)
    if args.beam_width:
        settings = replace(settings, beam_width=args.beam_width)
    if args.threshold is not None:
        settings = replace(settings, threshold=args.threshold)
    return settings


def _train_config(args: argparse.Namespace, model: str):
    from captchalab.training.config import TrainConfig

    return TrainConfig(
        model=model, epochs=args.epochs, max_minutes=args.max_minutes,
        batch_size=args.batch_size, learning_rate=args.lr, val_split=args.val_split,
        seed=args.seed, device=args.device, height=args.height, invert=args.invert,
        deskew=args.deskew, alphabet=args.alphabet,
        case_insensitive=args.case_insensitive, skip_bad=args.skip_bad, resume=args.resume,
        overwrite=args.overwrite, augment=not args.no_augment, centres=args.centres,
        model_options={"slices": args.slices} if args.slices else {})


def describe_metrics(metrics: dict) -> str:
    """One line for validation or evaluation metrics, whichever family produced them."""
    if "exact_set_accuracy" in metrics:
        return (f"{metrics['exact_set_accuracy']:.2%} exact character sets, "
                f"{metrics['per_label_accuracy']:.2%} of presence labels")
    return (f"{metrics['sequence_accuracy']:.2%} of captchas, "
            f"{metrics['char_accuracy']:.2%} of characters")


def run_train(args: argparse.Namespace) -> int:
    from captchalab.models import family_class
    from captchalab.runtime.artifact import read_metadata
    from captchalab.training import train
    from captchalab.training.distributed import Distributed
    from captchalab.training.pretrain import pretrain

    if args.model is None:
        args.model = read_metadata(args.init)["family"] if args.init else "crnn"
    if args.slices and args.model != "slice":
        raise CommandError("--slices applies to --model slice")
    if args.centres and not family_class(args.model).needs_centres:
        raise CommandError("--centres applies to --model heatmap")
    if (args.data is None) == (args.scheme is None):
        raise CommandError("give DATA (a folder of labelled images) or --scheme, not both")
    if args.pretrain and (args.init or args.scheme):
        raise CommandError("--pretrain makes its own starting model: drop --init/--scheme")
    if (args.deskew or args.invert) and (args.init or args.resume):
        raise CommandError("--init and --resume keep the preprocessing of the model they "
                           "start from; --deskew and --invert apply to new runs")
    if (args.init or args.pretrain) and args.resume:
        raise CommandError("--init and --pretrain start a new run; --resume continues one")
    config = _train_config(args, args.model)
    config.scheme = args.scheme
    config.init = str(args.init) if args.init else None
    config.freeze_epochs, config.backbone_lr = args.freeze_epochs, args.backbone_lr
    if args.restart_epochs and not args.restarts:
        raise CommandError("--restart-epochs applies to --restarts")
    if args.restarts and args.scheme:
        raise CommandError("--restarts ranks runs on DATA's validation images; it does not "
                           "apply to --scheme")
    if args.pretrain:
        config.init = str(pretrain(args.data, args.pretrain, config, log=_stderr,
                                   show_progress=not args.quiet, steps=args.pretrain_steps))
    if args.unlabelled and (args.restarts or args.scheme or args.resume):
        raise CommandError("--unlabelled trains new models on DATA; --restarts, --scheme and "
                           "--resume do not apply")
    if args.unlabelled:
        from captchalab.training.self_training import self_train

        trained = self_train(args.data, args.unlabelled, args.out, config,
                             args.pseudo_threshold, args.self_training_rounds, log=_stderr,
                             show_progress=not args.quiet)
        rounds = trained.report["rounds"]
        print("self-training: " + ", ".join(
            f"round {r['round']} {r['val_accuracy']:.2%} ({r['pseudo_labelled']} pseudo-labels)"
            for r in rounds) + f"; round {trained.best_round} kept")
        result = trained.result
    elif args.restarts:
        from captchalab.training.restarts import train_with_restarts

        restarts = train_with_restarts(args.data, args.out, config, args.restarts,
                                       args.restart_epochs, log=_stderr,
                                       show_progress=not args.quiet)
        first = restarts.report["stages"][0]["val_accuracy"]
        print(f"restarts: {args.restarts[0]} seeds at epoch {restarts.report['plan']['ends'][0]}"
              f" read {first['min']:.2%} .. {first['max']:.2%} of validation captchas; "
              f"seed {restarts.winner} won")
        result = restarts.result
    else:
        result = train(args.data, args.out, config, log=_stderr, show_progress=not args.quiet)
        if Distributed.from_environment().rank:
            return 0  # under torchrun, rank 0 reports
    metrics = result.metrics
    if metrics:
        print(f"validation: {describe_metrics(metrics)} ({metrics['count']} images); "
              f"{result.epochs} epochs in {result.minutes:.1f} min -> {result.model_path}")
    else:
        print(f"{result.epochs} epochs in {result.minutes:.1f} min -> {result.model_path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from captchalab.evaluation.compare import compare

    if args.resume:
        raise CommandError("compare trains every model afresh; --resume does not apply")
    if (args.out / "compare.json").exists() and not args.overwrite:
        raise CommandError(f"{args.out / 'compare.json'}: already exists; pass --overwrite to "
                           "train and compare again")
    entries = compare(args.data, args.out, args.models, _train_config(args, args.models[0]),
                      log=_stderr, show_progress=not args.quiet)
    print((args.out / "compare.md").read_text(encoding="utf-8"), end="")
    return EXIT_ERROR if all(e.error for e in entries) else 0


def run_audit(args: argparse.Namespace) -> int:
    from captchalab.evaluation.audit import audit
    from captchalab.training.config import TrainConfig

    out = args.out or Path(f"audit_{args.data.resolve().name}")
    if (out / "audit.json").exists() and not args.overwrite:
        raise CommandError(f"{out / 'audit.json'}: already exists; pass --overwrite to audit "
                           "again")
    config = TrainConfig(model=args.model, val_split=args.val_split, seed=args.seed,
                         device=args.device, case_insensitive=args.case_insensitive,
                         skip_bad=args.skip_bad, **({"height": args.height} if args.height
                                                    else {}))
    audit(args.data, out, args.sizes, config, args.max_minutes, args.seeds, args.pretrain,
          log=_stderr, show_progress=not args.quiet)
    print((out / "audit.md").read_text(encoding="utf-8"), end="")
    return 0


def run_annotate_centres(args: argparse.Namespace) -> int:
    from captchalab.runtime import Recognizer
    from captchalab.runtime.centres import annotate_centres
    from captchalab.training.progress import ProgressReporter

    recognizer = Recognizer.load(args.model, device=args.device)
    with ProgressReporter(not args.quiet).task("aligning", None) as advance:
        result = annotate_centres(recognizer, args.data, args.out, args.overwrite,
                                  skip_bad=args.skip_bad, advance=advance)
    skipped = f", skipped {result.skipped} too long for the model" if result.skipped else ""
    print(f"wrote centres for {result.written} images to {result.path} (mean label "
          f"probability {result.mean_label_probability:.2f}{skipped})")
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
    elif "exact_set_accuracy" in m:
        print(f"exact-set accuracy {m['exact_set_accuracy']:.2%}  per-label accuracy "
              f"{m['per_label_accuracy']:.2%}  images {m['count']}  "
              f"{m['images_per_second']:.0f} images/s  (multilabel: order not read)")
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

    from captchalab.data.preprocess import ImageError
    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    settings = _decoding(args, recognizer)
    if not recognizer.ordered and not args.json:
        _stderr(f"captchalab: note: {recognizer.family} models tell which characters are "
                "present, not their order; printing each present character with its probability")
    failed = 0
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        pixels = np.stack([array for _, array in pending])
        for (name, _), prediction in zip(pending, recognizer.predict_pixels(pixels, settings)):
            if args.json:
                print(json.dumps({"path": name, **prediction.to_dict()}))
            elif prediction.ordered:
                print(f"{name}\t{prediction.text}\t{prediction.confidence:.4f}")
            else:
                present = " ".join(f"{c}:{p:.3f}" for c, p in
                                   zip(prediction.characters, prediction.char_confidences))
                print(f"{name}\t{{{present}}}\t{prediction.confidence:.4f}")
        pending.clear()

    for name, source in _expand(args.paths):
        if isinstance(source, Exception):
            _stderr(f"captchalab: error: {name}: {source}")
            failed += 1
            continue
        try:
            pending.append((name, recognizer.preprocessing.load(source)))
        except (ImageError, OSError) as error:  # one bad file must not stop the rest
            _stderr(f"captchalab: error: {name}: {error}")
            failed += 1
            continue
        if len(pending) >= args.batch_size:
            flush()
    flush()
    sys.stdout.flush()
    return EXIT_ERROR if failed else 0


def run_generate(args: argparse.Namespace) -> int:
    from captchalab.generators import generate, load_scheme
    from captchalab.training.progress import ProgressReporter

    scheme = load_scheme(args.scheme)  # a bad scheme file fails here, before any output
    with ProgressReporter(not args.quiet).task(f"generating {scheme.name}", args.count) as advance:
        out = generate(scheme, args.count, args.out, args.seed, advance, workers=args.workers)
    print(f"wrote {args.count} {scheme.name} captchas to {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from captchalab.export import check_parity, export_onnx
    from captchalab.runtime import Recognizer
    from captchalab.training.progress import ProgressReporter

    if args.model.suffix.lower() == ".onnx":
        raise CommandError(f"{args.model}: already an ONNX file; export a .safetensors model")
    out = args.out or args.model.with_suffix(".int8.onnx" if args.int8 else ".onnx")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out}: already exists; pass --overwrite to replace it")
    export_onnx(args.model, out, args.int8)
    size = out.stat().st_size / 1e6
    if args.check is None:
        print(f"wrote {out} ({size:.2f} MB)")
        return 0
    reference, exported = Recognizer.load(args.model), Recognizer.load(out)
    with ProgressReporter(not (args.quiet or args.json)).task("checking", None) as advance:
        report = check_parity(reference, exported, args.check, advance=advance)
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
    _stderr(f"captchalab: error: {out}: parity check failed (needs >= 99.9% same readings and "
            "confidences within 1e-4)")
    return EXIT_ERROR


def run_serve(args: argparse.Namespace) -> int:
    from captchalab.service.limits import Limits

    try:
        from captchalab.service.server import serve
    except ImportError as error:
        raise CommandError(f"serve needs the service packages ({error.name} is missing): "
                           "pip install 'captchalab[serve]'") from None
    limits = Limits(args.max_image_bytes, args.max_request_bytes, args.max_pixels,
                    args.max_batch, args.batch_wait_ms / 1000, args.client_timeout,
                    args.max_connections)
    serve(args.models, args.host, args.port, args.workers, limits, args.threads,
          str(args.label_dir) if args.label_dir else None,
          str(args.labelled_dir) if args.labelled_dir else None)
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


COMMANDS = {"train": run_train, "compare": run_compare, "evaluate": run_evaluate,
            "predict": run_predict, "generate": run_generate,
            "annotate-centres": run_annotate_centres, "audit": run_audit,
            "export": run_export, "serve": run_serve, "analyze": run_analyze}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CommandError, DatasetError, ModelFileError, OSError, ValueError) as error:
        _stderr(f"captchalab: error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _stderr("captchalab: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
