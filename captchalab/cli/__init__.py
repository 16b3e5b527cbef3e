"""``captchalab`` command line: a thin layer over the Python API, one module per group of
commands (``train``: train, compare, audit; ``read``: evaluate, predict; ``export``;
``serve``; ``data``: generate, annotate-centres; ``analyze``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from captchalab import __version__
from captchalab.cli import analyze, data, export, read, serve, train
from captchalab.cli.options import EXIT_ERROR, CommandError, Parser, as_flags, stderr

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a Unix tool whose reader left
# packages each extra installs, to name the extra a missing import needs
EXTRAS = {"torch": "train", "onnx": "train", "fastapi": "serve", "uvicorn": "serve",
          "multipart": "serve", "python_multipart": "serve", "fastapi_offline": "serve",
          "httptools": "serve", "pydantic": "serve", "starlette": "serve",
          "prometheus_client": "serve", "watchfiles": "serve"}
WHAT_NEEDS = {"train": "PyTorch", "serve": "the service packages"}


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="captchalab",
                  description="Train, evaluate and run recognizers for text captchas.")
    root.add_argument("--version", action="version", version=f"captchalab {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (train, read, export, serve, data, analyze):
        group.add(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    from captchalab.data import DatasetError
    from captchalab.runtime.model_file import ModelFileError

    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ImportError as error:  # a package of an extra that is not installed
        extra = EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        stderr(f"captchalab: error: {args.command} needs {WHAT_NEEDS[extra]} ({error.name} is "
               f"not installed): pip install 'captchalab[{extra}]'")
        return EXIT_ERROR
    except (CommandError, DatasetError, ModelFileError, OSError, ValueError) as error:
        if isinstance(error, BrokenPipeError):
            return _reader_left()
        stderr(f"captchalab: error: {as_flags(str(error))}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        stderr("captchalab: interrupted")
        return 130


def _reader_left() -> int:
    """The reader of our output went away (``captchalab predict ... | head``): stop quietly,
    as other Unix tools do, without a second error when Python flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE
