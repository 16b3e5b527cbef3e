"""What a site asks for, applied inside the decoder: which symbols may appear, how many,
and in which case.

A constraint turns the network's outputs into outputs over the symbols it allows (the
probabilities of the others removed, the rest renormalised; for ``case`` the probabilities
of a symbol's two cases added), and the same decoders then read them. So a constrained
reading is the most probable reading among the allowed ones, and its confidences are
probabilities of the constrained reading: renormalised over what was allowed. A length
bound goes into the search itself (the CTC prefix beam search keeps only prefixes that can
end within it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from captchalab.data.alphabet import Alphabet

CASES = ("as-trained", "lower", "upper")


class ConstraintError(ValueError):
    """A constraint the model cannot meet; the message is one line."""


@dataclass(frozen=True)
class Constraints:
    """``allowed`` symbols (None: all), ``length`` as (min, max) (None: any), ``case``."""

    allowed: str | None = None
    length: tuple[int, int] | None = None
    case: str = "as-trained"

    @classmethod
    def make(cls, allowed: str | None = None, length: int | Sequence[int] | None = None,
             case: str | None = None) -> Constraints:
        """From what a caller gives: ``length`` an int or a (min, max) pair."""
        if length is not None:
            bounds = (length, length) if isinstance(length, int) else tuple(length)
            if len(bounds) != 2 or not all(isinstance(b, int) for b in bounds):
                raise ConstraintError(f"length must be a whole number or a (min, max) pair, "
                                      f"got {length!r}")
            if bounds[0] < 1 or bounds[1] < bounds[0]:
                raise ConstraintError(f"length must be at least 1 and min <= max, got {length!r}")
            length = (int(bounds[0]), int(bounds[1]))
        case = case or "as-trained"
        if case not in CASES:
            raise ConstraintError(f"case must be one of {', '.join(CASES)}, got {case!r}")
        if allowed is not None and not allowed:
            raise ConstraintError("allowed is empty: no symbol could be read")
        return cls(allowed or None, length, case)

    def merged_with(self, defaults: Constraints) -> Constraints:
        """These constraints, with ``defaults`` (a model file's) where these say nothing."""
        return Constraints(self.allowed if self.allowed is not None else defaults.allowed,
                           self.length if self.length is not None else defaults.length,
                           self.case if self.case != "as-trained" else defaults.case)

    @property
    def active(self) -> bool:
        return self.allowed is not None or self.length is not None or self.case != "as-trained"

    def to_dict(self) -> dict:
        return {"allowed": self.allowed, "length": list(self.length) if self.length else None,
                "case": self.case}

    @classmethod
    def from_dict(cls, values: dict | None) -> Constraints:
        values = values or {}
        return cls.make(values.get("allowed"), values.get("length"), values.get("case"))


def _shown(symbol: str, case: str) -> str:
    return symbol.lower() if case == "lower" else symbol.upper() if case == "upper" else symbol


def symbol_groups(alphabet: Alphabet, constraints: Constraints) -> tuple[Alphabet, list[list[int]]]:
    """The alphabet of the constrained readings, and for each of its symbols the model's class
    indices (1-based) whose probabilities it adds up (a symbol in both cases: two)."""
    groups: dict[str, list[int]] = {}
    for index, symbol in enumerate(alphabet.symbols, start=1):
        groups.setdefault(_shown(symbol, constraints.case), []).append(index)
    if constraints.allowed is not None:
        wanted = {_shown(s, constraints.case) for s in constraints.allowed}
        missing = "".join(sorted(s for s in wanted if s not in groups))
        if missing:
            raise ConstraintError(
                f"allowed symbols {missing!r} are not in the model's alphabet "
                f"({alphabet.symbols!r}" + (f" read in {constraints.case} case" if
                                            constraints.case != "as-trained" else "") + ")")
        groups = {s: classes for s, classes in groups.items() if s in wanted}
    return Alphabet("".join(groups)), list(groups.values())


def _log_sum(values: np.ndarray, axis: int) -> np.ndarray:
    top = values.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(values - top).sum(axis=axis)) + np.squeeze(top, axis)


def constrain_outputs(outputs: np.ndarray, decoder: str, groups: list[list[int]]
                      ) -> np.ndarray:
    """The network's ``outputs`` (the decoder's layout, classes on the class axis with 0 the
    blank or unused slot) as outputs over the constrained symbols' groups."""
    if decoder in ("ctc", "positions"):  # log-probabilities on the last axis
        log_probs = outputs.astype(np.float64)
        columns = [log_probs[..., 0]] if decoder == "ctc" else [
            np.full(log_probs.shape[:-1], -np.inf)]  # a positional slot is never empty
        columns += [_log_sum(log_probs[..., group], axis=-1) for group in groups]
        merged = np.stack(columns, axis=-1)
        return merged - _log_sum(merged, axis=-1)[..., None]  # renormalised over allowed
    if decoder == "presence":  # independent logits per symbol: P(any of the group)
        absent = 1.0 / (1.0 + np.exp(outputs.astype(np.float64)))
        columns = [np.zeros(outputs.shape[0])] + [
            1.0 - absent[:, group].prod(axis=1) for group in groups]
        present = np.clip(np.stack(columns, axis=1), 1e-12, 1 - 1e-12)
        return np.log(present / (1.0 - present))
    if decoder == "heatmap":  # (N, C, h, w) probabilities: the stronger map of a group
        maps = [np.zeros_like(outputs[:, 0])] + [outputs[:, group].max(axis=1)
                                                 for group in groups]
        return np.stack(maps, axis=1)
    raise ConstraintError(f"no constrained reading for decoder {decoder!r}")
