"""``captchalab serve``: load the models, build the app, run it with uvicorn."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from captchalab.service.app import ServedModel, create_app
from captchalab.service.connections import HeaderDeadlineProtocol
from captchalab.service.labelling import LabelQueue, ReviewLabelQueue
from captchalab.service.limits import Limits
from captchalab.service.review import ReviewQueue

CONFIG_VARIABLE = "CAPTCHALAB_SERVICE"  # how worker processes receive the settings
PROTOCOL = f"{HeaderDeadlineProtocol.__module__}:{HeaderDeadlineProtocol.__name__}"


def parse_model_spec(spec: str) -> tuple[Path, str | None]:
    """``path`` or ``path=name``."""
    path, _, name = spec.partition("=")
    if "=" in spec and not name.strip():
        raise ValueError(f"{spec}: empty model name after '='")
    return Path(path), name.strip() or None


def build_app(models: list[str], limits: dict | None = None, threads: int | None = None,
              label_dir: str | None = None, labelled_dir: str | None = None,
              review_dir: str | None = None, review_below: float | None = None,
              review_max_files: int = 1000, review_max_mb: float = 100.0,
              admin_token: str | None = None, watch: bool = False):
    """The app for ``models`` (``path[=name]`` each); raises one-line errors on bad input.

    With ``review_dir`` the images read below ``review_below`` are kept there, and ``/label``
    (with ``labelled_dir``) serves them, unless ``label_dir`` names another folder."""
    limits_ = Limits(**(limits or {}))
    _set_header_timeout(limits_.client_timeout)
    served = [ServedModel.load(path, name, limits_, threads)
              for path, name in map(parse_model_spec, models)]
    if (review_dir is None) != (review_below is None):
        raise ValueError("`review_dir` and `review_below` go together: where to keep the "
                         "unsure images, and below which confidence")
    review = (ReviewQueue(review_dir, review_below, review_max_files, review_max_mb)
              if review_dir else None)
    labels = None
    if label_dir or (review_dir and labelled_dir):
        if not labelled_dir:
            raise ValueError("`label_dir` needs `labelled_dir`, where labelled images go")
        labels = (LabelQueue(served[0].recognizer, label_dir, labelled_dir) if label_dir else
                  ReviewLabelQueue(served[0].recognizer, review_dir, labelled_dir))
    return create_app(served, limits_, labels, review, admin_token, watch, threads)


def _set_header_timeout(seconds: float) -> None:
    """Each server process reads its header deadline from the limits it was given."""
    HeaderDeadlineProtocol.header_timeout = seconds


def app_from_environment():
    """Factory for uvicorn's worker processes: settings from ``$CAPTCHALAB_SERVICE``."""
    return build_app(**json.loads(os.environ[CONFIG_VARIABLE]))


def serve(models: list[str], host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          limits: Limits | None = None, threads: int | None = None,
          label_dir: str | None = None, labelled_dir: str | None = None,
          log_level: str = "info", review: dict | None = None,
          admin_token: str | None = None, watch: bool = False) -> None:
    """Run the service; ``review`` holds ``review_dir``, ``review_below``,
    ``review_max_files`` and ``review_max_mb``."""
    import uvicorn

    if workers < 1:
        raise ValueError("`workers` must be at least 1")
    review = {k: v for k, v in (review or {}).items() if v is not None}
    if (label_dir or review) and workers > 1:
        raise ValueError("the labelling page and the review queue live in one process; use "
                         "`workers` 1 with `label_dir` or `review_dir`")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    limits = limits or Limits()
    settings = {"models": models, "limits": asdict(limits), "threads": threads,
                "label_dir": label_dir, "labelled_dir": labelled_dir, **review,
                "admin_token": admin_token, "watch": watch}
    app = build_app(**settings)  # fail here, once, with a clear error, before any worker
    options = {"host": host, "port": port, "log_level": log_level, "access_log": False,
               "http": PROTOCOL, "limit_concurrency": limits.max_connections,
               "timeout_keep_alive": min(5.0, limits.client_timeout)}
    if workers == 1:
        uvicorn.run(app, **options)
        return
    os.environ[CONFIG_VARIABLE] = json.dumps(settings)
    uvicorn.run("captchalab.service.server:app_from_environment", factory=True,
                workers=workers, **options)
