"""CRNN + CTC: backbone columns (-> bidirectional LSTM) -> per-frame symbol scores (seed 001).

New models read each column from its receptive field (``sequence="none"``): on the hard
shared sets the LSTM let training memorise whole training strings (BENCHMARKS.md, "Reading
columns without the LSTM"). With a full labelled set they add a little context, a
convolution over 5 neighbouring columns (``sequence="conv"``), which halved a hard scheme's
wrong lengths (BENCHMARKS.md, "Context between the columns"). ``sequence="lstm"`` keeps
seed 001's recurrent layer.
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
    sees, so the network cannot learn whole training strings by heart; ``sequence="conv"``
    adds a residual convolution over 5 neighbouring columns (16 pixels more on each side),
    zero at the start, so that a run from a ``none`` model (the base) starts from its reading.
    """

    summary = ("convolutional columns + CTC (context between them with --sequence conv or "
               "lstm), any length; the default")
    decoder = "ctc"
    class_outputs = ("classifier",)
    row_inputs = ("project",)  # channels x rows of each column
    additions = {("sequence", "none", "conv"): "context"}  # the base model reads with none
    captcha_augmentation = True  # BENCHMARKS.md, "Reading columns without the LSTM"
    SEQUENCES = ("lstm", "none", "conv")
    CONTEXT_KERNEL = 5  # columns the context convolution reads (4 px apart: 16 px more)
    DEFAULT_SEQUENCE = "none"  # of new models; files without the setting were trained with lstm
    # ... and "conv" from this many labelled training images: the context halved hard62's
    # wrong lengths (BENCHMARKS.md, "Context between the columns"); fewer labels keep the
    # base model's network, where the few-label figures were measured
    CONTEXT_SEQUENCE, CONTEXT_IMAGES = "conv", 600
    # arithmetic questions: without it the preset read 10.7% of answers (a column alone
    # probably cannot tell a minus sign from a noise line, nor "=" from two); the LSTM's
    # context can (BENCHMARKS.md, "Arithmetic questions")
    EXPRESSION_SEQUENCE = "lstm"
    options = (FamilyOption(
        "sequence", "context between the columns: lstm (a bidirectional LSTM), conv (a "
        "convolution over 5 neighbouring columns) or none (each column read on its own) "
        "(default: conv from 600 labelled training images, none below; lstm for arithmetic "
        "questions; or the --init model's)", "lstm|none|conv",
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
        self.context = None
        if _sequence(sequence) == "conv":  # a residual convolution along the columns
            self.context = nn.Conv1d(2 * hidden, 2 * hidden, self.CONTEXT_KERNEL,
                                     padding=self.CONTEXT_KERNEL // 2)
            nn.init.zeros_(self.context.weight)  # starts as no change: the source's reading
            nn.init.zeros_(self.context.bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, num_classes)

    @classmethod
    def configure(cls, shape, width_multiplier: float = 1.0, **options) -> dict:
        options.setdefault("sequence", cls.default_sequence(shape))
        return super().configure(shape, width_multiplier, **options)

    @classmethod
    def default_sequence(cls, shape) -> str:
        """lstm for arithmetic questions, conv for a full labelled set, else none."""
        if shape.expressions:
            return cls.EXPRESSION_SEQUENCE
        if shape.labelled_images >= cls.CONTEXT_IMAGES:
            return cls.CONTEXT_SEQUENCE
        return cls.DEFAULT_SEQUENCE

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(images)  # (N, C, h, w)
        n, c, h, w = maps.shape
        columns = maps.permute(0, 3, 1, 2).reshape(n, w, c * h)
        columns = self.project(self.dropout(columns))
        if self.rnn is not None:
            sequence, _ = self.rnn(columns)
            columns = sequence + columns
        if self.context is not None:
            columns = columns + self.context(F.relu(columns).transpose(1, 2)).transpose(1, 2)
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
