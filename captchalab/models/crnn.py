"""CRNN + CTC: backbone columns (-> bidirectional LSTM) -> per-frame symbol scores (seed 001).

New models read each column on its own (``sequence="none"``): on the hard shared sets the
LSTM let training memorise whole training strings (BENCHMARKS.md, "Reading columns without
the LSTM"). ``sequence="lstm"`` keeps seed 001's recurrent layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from captchalab.models.backbone import DEFAULT_WIDTHS, Backbone
from captchalab.models.family import Family, FamilyOption, Targets
from captchalab.models.registry import register


@register("crnn")
class CRNN(Family):
    """Reads a variable-length string; outputs ``(N, T, classes)`` log-probabilities, blank = 0.

    The LSTM output is added to a linear projection of the convolutional column features, a
    shortcut that lets the CTC loss leave its initial all-blank plateau quickly. With
    ``sequence="none"`` there is no LSTM: each column is read from what its receptive field
    sees, so the network cannot learn whole training strings by heart.
    """

    summary = "convolutional columns + CTC (an LSTM with --sequence lstm), any length; the default"
    decoder = "ctc"
    class_outputs = ("classifier",)
    row_inputs = ("project",)  # channels x rows of each column
    captcha_augmentation = True  # BENCHMARKS.md, "Reading columns without the LSTM"
    SEQUENCES = ("lstm", "none")
    DEFAULT_SEQUENCE = "none"  # of new models; files without the setting were trained with lstm
    # arithmetic questions: without it the preset read 10.7% of answers (a column alone
    # probably cannot tell a minus sign from a noise line, nor "=" from two); the LSTM's
    # context can (BENCHMARKS.md, "Arithmetic questions")
    EXPRESSION_SEQUENCE = "lstm"
    options = (FamilyOption(
        "sequence", "context between the columns: lstm (a bidirectional LSTM) or none (each "
        "column read on its own) (default: none; lstm for arithmetic questions; or the --init "
        "model's)", "lstm|none",
        lambda text: _sequence(text), inherited=True),)

    def __init__(
        self,
        num_classes: int,
        height: int,
        width: int,
        hidden: int = 96,
        dropout: float = 0.2,
        widths: tuple[int, int, int, int] = DEFAULT_WIDTHS,
        sequence: str = "lstm",
    ) -> None:
        super().__init__()
        self.backbone = Backbone(tuple(widths))
        channels, rows, _ = self.backbone.output_shape(height, width)
        features = channels * rows
        self.project = nn.Linear(features, 2 * hidden)
        self.rnn = (nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)
                    if _sequence(sequence) == "lstm" else None)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, num_classes)

    @classmethod
    def configure(cls, shape, width_multiplier: float = 1.0, **options) -> dict:
        options.setdefault("sequence", cls.EXPRESSION_SEQUENCE if shape.expressions
                           else cls.DEFAULT_SEQUENCE)
        return super().configure(shape, width_multiplier, **options)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(images)  # (N, C, h, w)
        n, c, h, w = maps.shape
        columns = maps.permute(0, 3, 1, 2).reshape(n, w, c * h)
        columns = self.project(self.dropout(columns))
        if self.rnn is not None:
            sequence, _ = self.rnn(columns)
            columns = sequence + columns
        return F.log_softmax(self.classifier(self.dropout(columns)), dim=-1)

    def loss(self, log_probs: torch.Tensor, targets: Targets) -> torch.Tensor:
        """CTC loss over every alignment of each label to the output frames."""
        n, t, _ = log_probs.shape
        lengths = targets.lengths.cpu()
        frames = torch.full((n,), t, dtype=torch.long)
        flat = torch.cat([targets.labels[i, : lengths[i]] for i in range(n)])
        return F.ctc_loss(log_probs.transpose(0, 1).float(), flat, frames, lengths,
                          blank=0, reduction="mean", zero_infinity=True)


def _sequence(text: str) -> str:
    if text not in CRNN.SEQUENCES:
        raise ValueError(f"expected one of {', '.join(CRNN.SEQUENCES)}, got {text!r}")
    return text
