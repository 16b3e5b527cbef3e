"""Validation during training: each epoch's loss and accuracy, and the final, tuned metrics.

Per epoch, CTC outputs are read greedily (fast); the final metrics use the decoder the model
file will use (prefix beam search by default). A thresholded decoder (heatmap, multilabel)
gets the threshold that reads the validation images best, stored in the model file.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from captchalab.models import Family
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import THRESHOLDS, Decoder, get_decoder
from captchalab.training.data import TrainingData


class Validator:
    """Reads a run's validation images with its model, as the model file will."""

    def __init__(self, data: TrainingData, decoder: str, settings: DecodingSettings,
                 device: torch.device) -> None:
        self.data, self.decoder, self.settings = data, get_decoder(decoder), settings
        self.device = device

    @property
    def enabled(self) -> bool:
        return len(self.data.validation) > 0

    @torch.inference_mode()
    def outputs(self, model: Family, chunk: int = 256) -> torch.Tensor:
        """Network output on every validation image, in evaluation mode."""
        model.eval()
        pixels, preprocessing = self.data.validation.pixels, self.data.preprocessing
        return torch.cat([
            model(torch.from_numpy(preprocessing.normalize(pixels[start : start + chunk]))
                  .to(self.device)).float().cpu()
            for start in range(0, len(pixels), chunk)])

    def tune(self, decoder: Decoder, outputs: np.ndarray, settings: DecodingSettings
             ) -> tuple[DecodingSettings, dict]:
        """Validation metrics with ``settings``; a thresholded decoder gets the threshold that
        reads the validation set best (ties go to the one nearest 0.5)."""
        truths = self.data.validation.labels
        candidates = ([replace(settings, threshold=t) for t in THRESHOLDS]
                      if decoder.thresholded else [settings])
        best: tuple[tuple, DecodingSettings, dict] | None = None
        for candidate in candidates:
            readings = [self.data.alphabet.decode(d.labels) for d in decoder(outputs, candidate)]
            metrics = decoder.reading.metrics(truths, readings, self.data.alphabet.symbols)
            rank = (decoder.reading.headline(metrics), -abs(candidate.threshold - 0.5))
            if best is None or rank > best[0]:
                best = (rank, candidate, metrics)
        assert best is not None
        return best[1], best[2]

    def epoch(self, model: Family) -> tuple[dict, DecodingSettings]:
        """One epoch's record (loss and accuracy, CTC read greedily) and the tuned settings."""
        if not self.enabled:
            return {}, self.settings
        outputs = self.outputs(model)
        with torch.inference_mode():
            loss = float(model.loss(outputs, self.data.validation.targets_of(slice(None))))
        quick = replace(self.settings, method="greedy")
        tuned, metrics = self.tune(self.decoder, outputs.numpy(), quick)
        record = {"val_loss": loss, "val_accuracy": self.decoder.reading.headline(metrics)}
        record |= {f"val_{k}": v for k, v in metrics.items() if k != "count"}
        if self.decoder.thresholded:
            record["threshold"] = tuned.threshold
        return record, replace(self.settings, threshold=tuned.threshold)

    def final(self, model: Family) -> tuple[dict, DecodingSettings]:
        """Validation metrics with the decoder the model file will use, tuned."""
        if not self.enabled:
            return {}, self.settings
        return self.tune(self.decoder, self.outputs(model).numpy(), self.settings)[::-1]
