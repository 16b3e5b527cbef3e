"""Character centres per image: ``annotations.jsonl`` with one JSON object per line,
``{"file": "2x4n8_3.png", "label": "2x4n8", "centres": [[x, y], ...]}`` in original pixels.

The generators write it; ``captchalab annotate-centres`` derives it from a trained CTC model
for folders labelled with strings only. The heatmap family trains on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from captchalab.data.dataset import DatasetError, Sample
from captchalab.fileio import atomic_write_text

ANNOTATIONS_FILE = "annotations.jsonl"
Centres = list[tuple[float, float]]


def read_centres(path: str | Path) -> dict[str, Centres]:
    """File name -> centres; a malformed line is a one-line ``DatasetError`` with its number."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such annotations file")
    table: dict[str, Centres] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            centres = [(float(x), float(y)) for x, y in row["centres"]]
            table[str(row["file"])] = centres
        except (ValueError, KeyError, TypeError):
            raise DatasetError(f"{path}: line {number} is not {{\"file\": ..., \"centres\": "
                               "[[x, y], ...]}") from None
    return table


def centres_for(samples: Iterable[Sample], table: dict[str, Centres], source: Path
                ) -> list[Centres]:
    """Each sample's centres (one per character), or an error naming what is missing."""
    found, missing, mismatched = [], [], []
    for sample in samples:
        centres = table.get(sample.path.name)
        if centres is None:
            missing.append(sample.path.name)
        elif len(centres) != len(sample.label):
            mismatched.append(sample.path.name)
        found.append(centres or [])
    if missing or mismatched:
        problem = (f"no centres for {len(missing)} image(s), e.g. {missing[0]}" if missing else
                   f"centres do not match the label length for {len(mismatched)} image(s), "
                   f"e.g. {mismatched[0]}")
        raise DatasetError(f"{source}: {problem}; derive centres with "
                           "'captchalab annotate-centres CRNN_MODEL DATA'")
    return found


def write_centres(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write annotation rows (``file``, ``label``, ``centres``) atomically."""
    return atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
