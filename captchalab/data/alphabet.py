"""The set of symbols a model can read, with index 0 reserved for the CTC blank."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Alphabet:
    """Ordered, duplicate-free symbols. Class index ``i + 1`` is ``symbols[i]``; 0 is the blank."""

    symbols: str

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("the alphabet is empty")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"the alphabet {self.symbols!r} repeats a symbol")

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> Alphabet:
        """The sorted set of every symbol used in ``labels``."""
        return cls("".join(sorted(set("".join(labels)))))

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and len(symbol) == 1 and symbol in self.symbols

    @property
    def num_classes(self) -> int:
        """Symbols plus the blank."""
        return len(self.symbols) + 1

    def unknown(self, text: str) -> str:
        """The symbols of ``text`` that are not in the alphabet, in order of appearance."""
        return "".join(dict.fromkeys(c for c in text if c not in self.symbols))

    def encode(self, text: str) -> list[int]:
        """Class indices (1-based) of ``text``; raises ``ValueError`` on an unknown symbol."""
        missing = self.unknown(text)
        if missing:
            raise ValueError(f"label {text!r} has symbols outside the alphabet: {missing!r}")
        index = {s: i + 1 for i, s in enumerate(self.symbols)}
        return [index[c] for c in text]

    def decode(self, indices: Iterable[int]) -> str:
        """Text of 1-based class indices (blanks are skipped)."""
        return "".join(self.symbols[i - 1] for i in indices if i > 0)
