"""HTTP service: recognition API, model list, health, and the try-it and labelling pages.

A thin layer over :class:`captchalab.runtime.Recognizer`; ``captchalab serve`` runs it.
"""

from captchalab.service.app import Limits, ServedModel, create_app

__all__ = ["Limits", "ServedModel", "create_app"]
