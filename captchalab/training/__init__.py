"""Training: the loop in parts (data, checkpoint, validation, schedule), and the recipes.

``TrainConfig`` is importable without torch; ``train`` and ``TrainResult`` load the trainer
(and torch) on first use.
"""

from captchalab.training.config import ConfigError, TrainConfig

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "distill", "train"]


def __getattr__(name: str):
    if name in ("train", "distill"):
        from captchalab.training import recipes

        return getattr(recipes, name)
    if name == "TrainResult":
        from captchalab.training.trainer import TrainResult

        return TrainResult
    raise AttributeError(f"module 'captchalab.training' has no attribute {name!r}")
