"""Training: the loop, its schedule, augmentation and curves.

``TrainConfig`` is importable without torch; ``train`` and ``TrainResult`` load the trainer
(and torch) on first use.
"""

from captchalab.training.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "train"]


def __getattr__(name: str):
    if name in ("TrainResult", "train"):
        from captchalab.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'captchalab.training' has no attribute {name!r}")
