"""``serve``: models over HTTP, with a try-it page and a labelling page."""

from __future__ import annotations

import argparse
from pathlib import Path

from captchalab.cli.options import NON_NEGATIVE, PORT, POSITIVE, POSITIVE_INT


def add(commands: argparse._SubParsersAction) -> None:
    from captchalab.service.limits import Limits

    limits = Limits()
    p = commands.add_parser(
        "serve", help="serve models over HTTP, with a try-it page and a labelling page",
        description="Serve MODELs (.onnx or .safetensors) over HTTP: POST /v1/recognize, "
        "GET /v1/models, GET /healthz, OpenAPI docs at /docs (served from the package, no "
        "internet needed), a page to try a model at /, and with --label-dir a page to label "
        "captchas at /label. Concurrent requests are batched together.")
    p.add_argument("models", nargs="+", metavar="MODEL[=NAME]",
                   help="model file, optionally named (default name: the file's stem); the "
                   "first is the default model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="port (default: %(default)s)")
    p.add_argument("--workers", type=POSITIVE_INT, default=1,
                   help="server processes (default: %(default)s)")
    p.add_argument("--threads", type=POSITIVE_INT, help="inference threads per worker (default: "
                   "CPU cores / workers)")
    p.add_argument("--label-dir", type=Path, metavar="UNLABELLED",
                   help="folder of images to label on /label, least confident first")
    p.add_argument("--labelled-dir", type=Path, metavar="OUT",
                   help="where /label saves <label>.png (never overwriting: _1, _2, ...)")
    p.add_argument("--max-image-bytes", type=POSITIVE_INT, default=limits.max_image_bytes,
                   help="largest image file accepted, in bytes (default: %(default)s)")
    p.add_argument("--max-request-bytes", type=POSITIVE_INT, default=limits.max_request_bytes,
                   help="largest request body accepted, in bytes (default: %(default)s)")
    p.add_argument("--max-pixels", type=POSITIVE_INT, default=limits.max_pixels,
                   help="largest width x height accepted (default: %(default)s)")
    p.add_argument("--max-batch", type=POSITIVE_INT, default=limits.max_batch,
                   help="images per request and per forward pass (default: %(default)s)")
    p.add_argument("--batch-wait-ms", type=NON_NEGATIVE, default=limits.batch_wait * 1000,
                   help="how long a forward pass waits for more requests (default: "
                   "%(default)s)")
    p.add_argument("--client-timeout", type=POSITIVE, default=limits.client_timeout,
                   metavar="SECONDS", help="a request's headers, and then its body, must "
                   "arrive within this time or it is answered 408 (default: %(default)s)")
    p.add_argument("--max-connections", type=POSITIVE_INT, default=limits.max_connections,
                   help="open connections at once; more are answered 503 (default: "
                   "%(default)s)")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from captchalab.service.limits import Limits
    from captchalab.service.server import serve

    limits = Limits(args.max_image_bytes, args.max_request_bytes, args.max_pixels,
                    args.max_batch, args.batch_wait_ms / 1000, args.client_timeout,
                    args.max_connections)
    serve(args.models, args.host, args.port, args.workers, limits, args.threads,
          str(args.label_dir) if args.label_dir else None,
          str(args.labelled_dir) if args.labelled_dir else None)
    return 0
