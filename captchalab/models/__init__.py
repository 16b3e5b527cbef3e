"""Model families on one shared backbone, chosen by name through the registry.

Importing this package registers every family, in this order (the first is the default).
"""

from importlib import import_module

from captchalab.models.family import DataShape, Family, FamilyOption, Targets
from captchalab.models.registry import (
    FAMILIES,
    build,
    completed_config,
    describe_families,
    families_taking,
    family_class,
    list_families,
    options_for,
    register,
)

for _module in ("crnn", "multihead", "slice", "heatmap", "multilabel"):
    import_module(f"captchalab.models.{_module}")

__all__ = ["FAMILIES", "DataShape", "Family", "FamilyOption", "Targets", "build",
           "completed_config", "describe_families", "families_taking", "family_class",
           "list_families", "options_for", "register"]
