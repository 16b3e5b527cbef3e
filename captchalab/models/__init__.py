"""Model families on one shared backbone, chosen by name through the registry."""

from captchalab.models import crnn  # noqa: F401  (registers the family)
from captchalab.models.registry import FAMILIES, build, register

__all__ = ["FAMILIES", "build", "register"]
