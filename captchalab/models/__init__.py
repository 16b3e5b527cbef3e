"""Model families on one shared backbone, chosen by name through the registry."""

from captchalab.models import crnn, heatmap, multihead, multilabel, slice  # noqa: F401 (register)
from captchalab.models.family import DataShape, Family, Targets
from captchalab.models.registry import FAMILIES, build, family_class, options_for, register

__all__ = ["FAMILIES", "DataShape", "Family", "Targets", "build", "family_class", "options_for",
           "register"]
