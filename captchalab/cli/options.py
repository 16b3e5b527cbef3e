"""What the commands share: the parser, argument types, option groups, and the one-line
errors, with library option names (`` `max_minutes` ``) shown as flags (``--max-minutes``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

EXIT_ERROR = 1


class CommandError(Exception):
    """A fatal problem reported to the user as one line."""


class Parser(argparse.ArgumentParser):
    """An argument error is one line and a pointer to ``--help``, not the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def stderr(message: str) -> None:
    print(message, file=sys.stderr)


def log(message: str) -> None:
    """A library's progress line on stderr, its option names shown as flags."""
    stderr(as_flags(message))


# the library's names for options whose flag is not simply --name-with-dashes
_FLAG_NAMES = {"learning_rate": "--lr", "augment": "--no-augment"}
_QUOTED_NAME = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(message: str) -> str:
    """A library message with its backticked option names written as this CLI's flags."""
    return _QUOTED_NAME.sub(
        lambda m: _FLAG_NAMES.get(m[1], "--" + m[1].replace("_", "-")), message)


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
FRACTION_OPEN = _bounded(float, "a number above 0, at most 1", 0, 1.000001, low_open=True)
HEIGHT = _bounded(int, "a height of at least 16 pixels", 16)
PORT = _bounded(int, "a port from 0 to 65535", 0, 65536)


def counts(text: str) -> tuple[int, ...]:
    values = [POSITIVE_INT(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    return tuple(values)


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _argument_type(parse):
    """A family option's parser as an argparse type (its ValueError becomes a usage error)."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _families() -> dict:
    """The registered families, or none where PyTorch is not installed (the runtime install
    still shows every command's help; training commands then say what to install)."""
    try:
        from captchalab.models import FAMILIES
    except ImportError:
        return {}
    return FAMILIES


def add_family_options(p: argparse.ArgumentParser) -> None:
    """Every registered family's own options (``--slices``, ``--centres``, ...)."""
    for family, cls in _families().items():
        for option in cls.options:
            p.add_argument(f"--{option.name.replace('_', '-')}", dest=f"family_{option.name}",
                           type=_argument_type(option.parse), metavar=option.metavar,
                           help=f"{family} family: {option.help}")


def family_options(args: argparse.Namespace) -> dict:
    """The family options given on the command line, by name."""
    prefix = "family_"
    return {key[len(prefix):]: value for key, value in vars(args).items()
            if key.startswith(prefix) and value is not None}


def family_names() -> list[str]:
    return list(_families()) or ["crnn"]


def family_help() -> str:
    families = _families()
    if not families:
        return "model family (the families need PyTorch: pip install 'captchalab[train]')"
    return "model family: " + ", ".join(f"{name} ({cls.summary})"
                                        for name, cls in families.items())


def add_training_options(p: argparse.ArgumentParser, per_family: bool = False) -> None:
    """Options shared by ``train`` and ``compare``."""
    from captchalab.data.preprocess import (
        DEFAULT_HEIGHT,
        GREY_MODES,
        MAX_FITTED_HEIGHT,
        MIN_GLYPH_WIDTH,
        MIN_GLYPH_WIDTH_BOTH_CASES,
    )
    from captchalab.training.config import (
        BUDGET_FULL_IMAGES,
        DEFAULT_BUDGET_MINUTES,
        FROM_BASE_FULL_RATE_IMAGES,
        FROM_BASE_RATE,
        MAX_CYCLES,
        SCHEDULES,
        TARGET_STEPS,
        TrainConfig,
    )

    defaults = TrainConfig()
    p.add_argument("--epochs", type=POSITIVE_INT,
                   help=f"epochs to train, in one schedule (default: about {TARGET_STEPS} "
                   "optimiser steps' worth per cycle, twice that for the multihead families)")
    p.add_argument("--max-minutes", type=POSITIVE,
                   help=("time budget of each family's training, in minutes" if per_family
                         else "time budget in minutes") + "; the learning-rate schedule is "
                   "fitted into it, and a run it stops before half of its steps says so "
                   f"(default: none for the first cycle; when the run chains cycles, "
                   f"{DEFAULT_BUDGET_MINUTES:g} for the run from {BUDGET_FULL_IMAGES} training "
                   "images, in proportion for fewer)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=defaults.batch_size,
                   help="images per optimiser step (default: %(default)s)")
    p.add_argument("--lr", type=POSITIVE, default=defaults.learning_rate,
                   help="peak learning rate of the one-cycle schedule (default: %(default)s; "
                   f"a run from the base model with few labels peaks at down to "
                   f"{FROM_BASE_RATE:.2g} x --lr, the whole of it from "
                   f"{FROM_BASE_FULL_RATE_IMAGES} training images)")
    p.add_argument("--seed", type=COUNT, default=defaults.seed,
                   help="seed of the split, the initialisation and the augmentation "
                   "(default: %(default)s)")
    p.add_argument("--device", default=defaults.device,
                   help="auto (a GPU when there is one), cpu or cuda (default: %(default)s)")
    p.add_argument("--val-split", type=FRACTION, default=defaults.val_split,
                   help="share of images held out for validation (default: %(default)s)")
    p.add_argument("--height", type=HEIGHT, default=defaults.height,
                   help="input height in pixels; the width keeps the images' aspect ratio "
                   f"(default: from the data: {DEFAULT_HEIGHT}, or taller where that leaves "
                   f"less than {MIN_GLYPH_WIDTH} pixels of width per character, "
                   f"{MIN_GLYPH_WIDTH_BOTH_CASES} where the labels hold a letter in both "
                   f"cases; never taller than the images nor {MAX_FITTED_HEIGHT})")
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
    recipe = p.add_argument_group(
        "recipe levers", "How hard the recipe works (BENCHMARKS.md, 'The recipe's levers', "
        "measures each on the shared sets).")
    recipe.add_argument("--schedule", choices=SCHEDULES,
                        default=defaults.schedule,
                        help="one-cycle: the planned steps; until-converged: hold the peak rate "
                        "while validation improves, then cool down and stop, at most "
                        f"{defaults.stretch:g}x the planned steps (default: %(default)s)")
    recipe.add_argument("--cycles", type=POSITIVE_INT, metavar="N",
                        help="one-cycle schedules back to back (warm restarts from the last "
                        "weights) while each improves validation and the next fits in the "
                        "budget; 1 trains one schedule (default: up to "
                        f"{MAX_CYCLES} without --epochs, else 1)")
    recipe.add_argument("--ema", type=FRACTION, metavar="DECAY", default=defaults.ema,
                        help="validate and keep an exponential moving average of the weights "
                        "with this decay per step, e.g. 0.999 (default: "
                        + ("off" if defaults.ema is None else f"{defaults.ema:g}") + ")")
    recipe.add_argument("--no-ema", dest="ema", action="store_const", const=None,
                        help="keep the trained weights themselves, no average")
    recipe.add_argument("--augment-captcha", action=argparse.BooleanOptionalAction,
                        default=defaults.augment_captcha,
                        help="also elastic warp, blur, thin occluding lines and dots "
                        "(default: on for crnn, the family where it was measured to help, "
                        "off for the others)")
    recipe.add_argument("--grey", choices=GREY_MODES, default=defaults.grey,
                        help="colour to grey: luma, or each pixel's darkest channel (pale "
                        "coloured glyphs; stored in the model) (default: %(default)s)")
    recipe.add_argument("--width-multiplier", type=POSITIVE, metavar="F",
                        default=defaults.width_multiplier,
                        help="channels of the backbone and heads as a multiple of the family's "
                        "(default: %(default)s)")
    add_family_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace, model: str, **more):
    """The ``TrainConfig`` the shared training options describe."""
    from captchalab.training.config import TrainConfig

    return TrainConfig(
        model=model, epochs=args.epochs, max_minutes=args.max_minutes,
        batch_size=args.batch_size, learning_rate=args.lr, val_split=args.val_split,
        seed=args.seed, device=args.device, height=args.height, invert=args.invert,
        deskew=args.deskew, alphabet=args.alphabet, case_insensitive=args.case_insensitive,
        skip_bad=args.skip_bad, resume=args.resume, overwrite=args.overwrite,
        augment=not args.no_augment, model_options=family_options(args),
        schedule=args.schedule, cycles=args.cycles, ema=args.ema,
        augment_captcha=args.augment_captcha, grey=args.grey,
        width_multiplier=args.width_multiplier, **more)


def add_decoding(p: argparse.ArgumentParser, device: str = "cpu") -> None:
    p.add_argument("--decoder", choices=("greedy", "beam"),
                   help="CTC decoding, crnn only (default: the model file's setting)")
    p.add_argument("--beam-width", type=POSITIVE_INT,
                   help="beam width for --decoder beam (default: the model file's setting)")
    p.add_argument("--threshold", type=float,
                   help="detection threshold, heatmap and multilabel only (default: the one "
                   "tuned on the validation set)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=64,
                   help="images per forward pass (default: %(default)s)")
    add_device(p, device)


def lengths(text: str) -> int | tuple[int, int]:
    """``4`` or ``4-6``: a length, or a (min, max) range."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a length such as 4 or 4-6, got {text!r}"
                                         ) from None
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise argparse.ArgumentTypeError(f"expected a length of at least 1, min <= max, got "
                                         f"{text!r}")
    return bounds[0] if bounds[0] == bounds[1] else bounds


def add_constraints(p: argparse.ArgumentParser, stored: bool = False) -> None:
    """What the site asks for, applied inside the decoder (README, 'Constrained reading')."""
    group = p.add_argument_group(
        "constrained reading",
        "Applied inside the decoder: the reading is the most probable allowed one, and its "
        "confidences are probabilities renormalised over what was allowed. "
        + ("Stored in the model file as its defaults, which predict, evaluate and the "
           "service apply unless a request says otherwise." if stored else
           "A model file may hold defaults (train or export with --allowed ...); these "
           "override them."))
    group.add_argument("--allowed", metavar="SYMBOLS",
                       help="only these symbols may be read, e.g. 0123456789")
    group.add_argument("--length", type=lengths, metavar="N|MIN-MAX",
                       help="read exactly N characters, or between MIN and MAX")
    group.add_argument("--case", choices=("as-trained", "lower", "upper"),
                       help="lower or upper: a symbol's two cases count as one, shown in that "
                       "case (default: as trained)")


def constraints(args: argparse.Namespace):
    from captchalab.runtime.constraints import Constraints

    return Constraints.make(args.allowed, args.length, args.case)


def add_device(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    p.add_argument("--device", default=default,
                   help="cpu, cuda or auto (a GPU when there is one) (default: %(default)s)")


def add_out_folder(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("."),
                   help="output folder (default: the current one)")


def decoding(args: argparse.Namespace, recognizer):
    """The model file's decoding settings with the user's overrides, checked against the family."""
    from dataclasses import replace

    settings, decoder = recognizer.decoding, recognizer.decoder
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
