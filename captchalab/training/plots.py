"""Training curves as a PNG."""

from __future__ import annotations

import io
from pathlib import Path

from captchalab.fileio import atomic_write_bytes


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss (train/validation) and validation accuracy per epoch, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [h["train_loss"] for h in history], label="train")
    if any(h.get("val_loss") is not None for h in history):
        loss_axis.plot(epochs, [h.get("val_loss") for h in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    loss_axis.legend()
    for key, label in (("val_sequence_accuracy", "captcha"), ("val_char_accuracy", "character"),
                       ("val_exact_set_accuracy", "exact set"),
                       ("val_per_label_accuracy", "per label")):
        if any(h.get(key) is not None for h in history):
            accuracy_axis.plot(epochs, [h.get(key) for h in history], label=label)
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.01),
                      title="validation accuracy")
    accuracy_axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
