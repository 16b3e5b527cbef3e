"""HTTP service: recognition API, model list, health, and the try-it and labelling pages.

A thin layer over :class:`captchalab.runtime.Recognizer`; ``captchalab serve`` runs it.
Needs the ``serve`` extra (FastAPI, uvicorn); ``Limits`` alone imports without it.
"""

from captchalab.service.limits import Limits

__all__ = ["Limits", "ServedModel", "create_app"]


def __getattr__(name: str):
    if name in ("ServedModel", "create_app"):
        from captchalab.service import app

        return getattr(app, name)
    raise AttributeError(f"module 'captchalab.service' has no attribute {name!r}")
