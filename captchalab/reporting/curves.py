"""A run's curves as PNG: loss and validation accuracy per epoch, and restarts side by side."""

from __future__ import annotations

from pathlib import Path

from captchalab.reporting.charts import pyplot, write_png


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss (train/validation) and validation accuracy per epoch, written atomically."""
    plt = pyplot()

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
    return write_png(figure, path)


def plot_restarts(histories: dict[int, list[dict]], winner: int, stage_ends: list[int],
                  path: str | Path) -> Path:
    """Every restart's validation loss and accuracy on one plot; the winner stands out and
    dashed lines mark where stages ended."""
    plt = pyplot()
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for seed, history in sorted(histories.items(), key=lambda item: item[0] == winner):
        epochs = [h["epoch"] for h in history]
        style = ({"color": "C3", "linewidth": 2.0, "label": f"seed {seed} (kept)"}
                 if seed == winner else
                 {"color": "0.6", "linewidth": 0.8, "alpha": 0.8, "marker": "."})
        loss_axis.plot(epochs, [h.get("val_loss") for h in history], **style)
        accuracy_axis.plot(epochs, [h.get("val_accuracy") for h in history], **style)
    for axis in (loss_axis, accuracy_axis):
        for end in stage_ends:
            axis.axvline(end, color="0.3", linestyle="--", linewidth=0.8)
    loss_axis.set(xlabel="epoch", ylabel="validation loss", yscale="log",
                  title=f"{len(histories)} restarts: validation loss")
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.01),
                      title="validation accuracy")
    loss_axis.legend()
    return write_png(figure, path)
