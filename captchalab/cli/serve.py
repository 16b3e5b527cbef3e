"""``serve``: models over HTTP, with a try-it page and a labelling page."""

from __future__ import annotations

import argparse
from pathlib import Path

from captchalab.cli.options import FRACTION_OPEN, NON_NEGATIVE, PORT, POSITIVE, POSITIVE_INT


def add(commands: argparse._SubParsersAction) -> None:
    from captchalab.service.limits import Limits

    limits = Limits()
    p = commands.add_parser(
        "serve", help="serve models over HTTP, with a try-it page and a labelling page",
        description="Serve MODELs (.onnx or .safetensors) over HTTP: POST /v1/recognize, "
        "GET /v1/models, GET /healthz, OpenAPI docs at /docs (served from the package, no "
        "internet needed), a page to try a model at /, and with --label-dir a page to label "
        "captchas at /label. Concurrent requests are batched together.")
    p.add_argument("models", nargs="*", metavar="MODEL[=NAME]",
                   help="model file, optionally named (default name: the file's stem); the "
                   "first is the default model (default: `base`, the packaged base model)")
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
                   help="where /label saves <label>.png (never overwriting: _1, _2, ...); "
                   "with --review-dir and no --label-dir, /label serves the review queue")
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
    group = p.add_argument_group(
        "closing the loop",
        "Keep the captchas the model is unsure of, label them on /label, fine-tune, and swap "
        "the new model in without a restart (README, 'The loop').")
    group.add_argument("--review-dir", type=Path, metavar="DIR",
                       help="keep each image read with confidence below --review-below here, "
                       "with the reading, confidence, model version and time (once per "
                       "image); /label serves it when --labelled-dir is given")
    group.add_argument("--review-below", type=FRACTION_OPEN, metavar="P",
                       help="confidence under which an image goes to --review-dir, e.g. 0.9")
    group.add_argument("--review-max-files", type=POSITIVE_INT, default=1000, metavar="N",
                       help="images kept at most; the oldest go first (default: %(default)s)")
    group.add_argument("--review-max-mb", type=POSITIVE, default=100.0, metavar="MB",
                       help="megabytes of images kept at most (default: %(default)s)")
    group.add_argument("--watch", action="store_true",
                       help="swap a model in when its file changes")
    group.add_argument("--admin-token", metavar="TOKEN",
                       help="also accept admin requests (POST /v1/models/NAME/reload) from "
                       "other machines that send 'Authorization: Bearer TOKEN'; without it "
                       "they answer this machine only")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from captchalab.service.limits import Limits
    from captchalab.service.server import serve

    limits = Limits(args.max_image_bytes, args.max_request_bytes, args.max_pixels,
                    args.max_batch, args.batch_wait_ms / 1000, args.client_timeout,
                    args.max_connections)
    review = {"review_dir": str(args.review_dir) if args.review_dir else None,
              "review_below": args.review_below, "review_max_files": args.review_max_files,
              "review_max_mb": args.review_max_mb} if args.review_dir or args.review_below else {}
    if not args.models:
        print("no model given: serving the packaged base model (`base`); fine-tune it on a "
              "few dozen labelled captchas for high accuracy (README, 'Zero labels')")
    serve(args.models or ["base"], args.host, args.port, args.workers, limits, args.threads,
          str(args.label_dir) if args.label_dir else None,
          str(args.labelled_dir) if args.labelled_dir else None, review=review,
          admin_token=args.admin_token, watch=args.watch)
    return 0
