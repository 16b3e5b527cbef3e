"""``analyze``: looking inside a trained model (each analysis writes a PNG and a JSON file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from captchalab.cli.options import POSITIVE, POSITIVE_INT, CommandError, add_device, add_out_folder


def add(commands: argparse._SubParsersAction) -> None:
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
    add_out_folder(r)
    r.set_defaults(run=run_receptive_field)
    e = kinds.add_parser(
        "errors", help="most wrong and most right readings, character confusions",
        description="Read DATA with MODEL and write most_wrong.png (wrong readings the model "
        "was surest of), most_right.png (right readings it was surest of), confusion.png "
        "(which character is read as which, over least-edit alignments; families that read "
        "order) and errors.json.")
    e.add_argument("model", type=Path, help="model file (.safetensors or .onnx)")
    e.add_argument("data", type=Path, help="folder of labelled images")
    add_out_folder(e)
    e.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    add_device(e)
    e.set_defaults(run=run_errors)
    s = kinds.add_parser(
        "saliency", help="which input pixels the model reads each character from",
        description="Seed 002's input minimisation: starting from IMAGE, with the weights "
        "fixed, lower the image's ink while keeping each recognised character's output (its "
        "centre map, or its log-probability at its position) close to its value on IMAGE: "
        "loss = |F(X) - F(IMAGE)|^2 + C * sum(X). Writes saliency.png (the original, then "
        "each character's minimised image with the share of ink it kept) and saliency.json.")
    s.add_argument("model", type=Path, help="model file (.safetensors)")
    s.add_argument("image", type=Path, help="a captcha image")
    s.add_argument("--c", type=POSITIVE, default=0.1,
                   help="weight of the total ink (default: %(default)s, as in seed 002)")
    s.add_argument("--steps", type=POSITIVE_INT, default=300,
                   help="gradient steps (default: %(default)s)")
    add_out_folder(s)
    s.set_defaults(run=run_saliency)


def _layers_needed(model: Path, analysis: str) -> None:
    if model.suffix.lower() == ".onnx":
        raise CommandError(f"{model}: {analysis} reads the network's layers; give the "
                           ".safetensors model it was exported from")


def run_saliency(args: argparse.Namespace) -> int:
    _layers_needed(args.model, "saliency")
    from captchalab.analysis.saliency import saliency, write_saliency

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


def run_errors(args: argparse.Namespace) -> int:
    from captchalab.analysis.errors import write_error_analysis
    from captchalab.evaluation import evaluate
    from captchalab.runtime import Recognizer

    recognizer = Recognizer.load(args.model, device=args.device)
    result = evaluate(recognizer, args.data, skip_bad=args.skip_bad)
    write_error_analysis(result, recognizer.alphabet.symbols, args.out)
    print(f"{len(result.mistakes())} of {len(result.paths)} read wrong; wrote most_wrong.png, "
          "most_right.png" + (", confusion.png" if recognizer.ordered else "")
          + f" and errors.json to {args.out}")
    return 0


def run_receptive_field(args: argparse.Namespace) -> int:
    _layers_needed(args.model, "receptive-field")
    from captchalab.analysis.receptive_field import receptive_field_report, write_receptive_field

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
