"""``generate`` and ``annotate-centres``: commands that make labelled data."""

from __future__ import annotations

import argparse
from os import cpu_count
from pathlib import Path

from captchalab.cli.options import COUNT, POSITIVE_INT, add_device


def add(commands: argparse._SubParsersAction) -> None:
    from captchalab.data.annotations import ANNOTATIONS_FILE
    from captchalab.generators.scheme import schemes

    p = commands.add_parser(
        "generate", help="write synthetic labelled captchas",
        description="Write COUNT images <label>_<n>.png of SCHEME into OUT, with "
        "annotations.jsonl (each character's centre and box). SCHEME is a built-in preset "
        "or a scheme TOML file (see README, 'Synthetic schemes'). The same seed gives the "
        "same files for any number of workers.")
    p.add_argument("scheme", help=f"built-in ({', '.join(schemes())}), universe (every image "
                   "its own random scheme: what the base model learned from) or a .toml file")
    p.add_argument("--count", type=POSITIVE_INT, required=True, help="images to write")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=COUNT, default=0,
                   help="seed of the drawing: the same seed, the same images (default: "
                   "%(default)s)")
    p.add_argument("--workers", type=POSITIVE_INT, default=cpu_count() or 1,
                   help="processes drawing images (default: the number of CPUs, %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_generate)

    p = commands.add_parser(
        "annotate-centres", help="derive character centres from string labels with a crnn",
        description="Align each image's known label to the output frames of MODEL (a crnn) "
        f"and write every character's centre to DATA/{ANNOTATIONS_FILE} (or --out), the file "
        "the heatmap family trains on.")
    p.add_argument("model", type=Path, help="crnn model file (.safetensors or .onnx)")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, help=f"annotations file (default: DATA/{ANNOTATIONS_FILE})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_annotate_centres)


def run_generate(args: argparse.Namespace) -> int:
    from captchalab.generators import generate, load_scheme
    from captchalab.reporting.progress import ProgressReporter

    scheme = load_scheme(args.scheme)  # a bad scheme file fails here, before any output
    with ProgressReporter(not args.quiet).task(f"generating {scheme.name}", args.count) as advance:
        out = generate(scheme, args.count, args.out, args.seed, advance, workers=args.workers)
    print(f"wrote {args.count} {scheme.name} captchas to {out}")
    return 0


def run_annotate_centres(args: argparse.Namespace) -> int:
    from captchalab.data.centres import annotate_centres
    from captchalab.reporting.progress import ProgressReporter
    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    with ProgressReporter(not args.quiet).task("aligning", None) as advance:
        result = annotate_centres(recognizer, args.data, args.out, args.overwrite,
                                  skip_bad=args.skip_bad, advance=advance)
    skipped = f", skipped {result.skipped} too long for the model" if result.skipped else ""
    print(f"wrote centres for {result.written} images to {result.path} (mean label "
          f"probability {result.mean_label_probability:.2f}{skipped})")
    return 0
