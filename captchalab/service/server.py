"""``captchalab serve``: load the models, build the app, run it with uvicorn."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from captchalab.service.app import ServedModel, create_app
from captchalab.service.connections import HeaderDeadlineProtocol
from captchalab.service.labelling import LabelQueue
from captchalab.service.limits import Limits

CONFIG_VARIABLE = "CAPTCHALAB_SERVICE"  # how worker processes receive the settings
PROTOCOL = f"{HeaderDeadlineProtocol.__module__}:{HeaderDeadlineProtocol.__name__}"


def parse_model_spec(spec: str) -> tuple[Path, str | None]:
    """``path`` or ``path=name``."""
    path, _, name = spec.partition("=")
    if "=" in spec and not name.strip():
        raise ValueError(f"{spec}: empty model name after '='")
    return Path(path), name.strip() or None


def build_app(models: list[str], limits: dict | None = None, threads: int | None = None,
              label_dir: str | None = None, labelled_dir: str | None = None):
    """The app for ``models`` (``path[=name]`` each); raises one-line errors on bad input."""
    limits_ = Limits(**(limits or {}))
    _set_header_timeout(limits_.client_timeout)
    served = [ServedModel.load(path, name, limits_, threads)
              for path, name in map(parse_model_spec, models)]
    labels = None
    if label_dir:
        if not labelled_dir:
            raise ValueError("`label_dir` needs `labelled_dir`, where labelled images go")
        labels = LabelQueue(served[0].recognizer, label_dir, labelled_dir)
    return create_app(served, limits_, labels)


def _set_header_timeout(seconds: float) -> None:
    """Each server process reads its header deadline from the limits it was given."""
    HeaderDeadlineProtocol.header_timeout = seconds


def app_from_environment():
    """Factory for uvicorn's worker processes: settings from ``$CAPTCHALAB_SERVICE``."""
    return build_app(**json.loads(os.environ[CONFIG_VARIABLE]))


def serve(models: list[str], host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          limits: Limits | None = None, threads: int | None = None,
          label_dir: str | None = None, labelled_dir: str | None = None,
          log_level: str = "info") -> None:
    import uvicorn

    if workers < 1:
        raise ValueError("`workers` must be at least 1")
    if label_dir and workers > 1:
        raise ValueError("the labelling page keeps its queue in one process; use `workers` 1 "
                         "with `label_dir`")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    limits = limits or Limits()
    settings = {"models": models, "limits": asdict(limits), "threads": threads,
                "label_dir": label_dir, "labelled_dir": labelled_dir}
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
