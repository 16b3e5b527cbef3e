"""Training: the loop, its schedule, augmentation and curves."""

from captchalab.training.trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
