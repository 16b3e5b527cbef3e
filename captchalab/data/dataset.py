"""Labelled captcha folders: the label is the file name, or comes from labels.txt / labels.csv."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captchalab.data.alphabet import Alphabet
from captchalab.data.preprocess import ImageError, open_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
LABEL_FILES = ("labels.csv", "labels.txt")
_COPY_SUFFIX = re.compile(r"_\d+$")


class DatasetError(ValueError):
    """A labelled folder that cannot be used as it is; the message is one line for the user."""


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    path: Path
    label: str
    size: tuple[int, int]  # (width, height) of the original image


@dataclass(frozen=True)
class BadFile:
    """A file that cannot be used, and why."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path.name} ({self.problem})"


@dataclass
class LabelledFolder:
    """The readable samples of a folder, the files that were not, and the alphabet."""

    root: Path
    samples: list[Sample]
    bad: list[BadFile] = field(default_factory=list)
    alphabet: Alphabet | None = None
    fingerprint: str = ""

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.samples]

    @property
    def label_lengths(self) -> list[int]:
        return sorted({len(s.label) for s in self.samples})

    def raise_if_bad(self, skip_bad: bool = False) -> None:
        """Raise one clear ``DatasetError`` naming the bad files unless ``skip_bad`` is set."""
        if not self.samples:
            detail = f"; {describe_bad(self.bad)}" if self.bad else ""
            raise DatasetError(f"{self.root}: no usable labelled images{detail}")
        if self.bad and not skip_bad:
            raise DatasetError(
                f"{self.root}: {describe_bad(self.bad)}; fix them or pass `skip_bad`"
            )


def describe_bad(bad: Sequence[BadFile], limit: int = 8) -> str:
    """``3 bad files: a.png (empty file), ...`` on one line, listing at most ``limit``."""
    shown = ", ".join(str(b) for b in bad[:limit])
    more = f", and {len(bad) - limit} more" if len(bad) > limit else ""
    noun = "file" if len(bad) == 1 else "files"
    return f"{len(bad)} bad {noun}: {shown}{more}"


def label_from_filename(name: str) -> str:
    """``226md_3.png`` -> ``226md``: the stem without a trailing ``_<digits>`` copy number."""
    return _COPY_SUFFIX.sub("", Path(name).stem)


def _read_label_file(folder: Path) -> dict[str, str] | None:
    """``filename,label`` rows from labels.csv or labels.txt, or None when neither exists."""
    for name in LABEL_FILES:
        path = folder / name
        if not path.is_file():
            continue
        labels: dict[str, str] = {}
        lines: dict[str, int] = {}
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is dropped
        except UnicodeDecodeError as error:
            raise DatasetError(f"{path}: not UTF-8 text (byte {error.start}); save it as "
                               "UTF-8") from None
        delimiter = "\t" if "\t" in text and "," not in text else ","
        for line_number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise DatasetError(
                    f"{path}: line {line_number} should be 'filename,label', got {row!r}"
                )
            filename, label = row[0].strip(), row[1].strip()
            if line_number == 1 and (filename.lower(), label.lower()) == ("filename", "label"):
                continue
            if filename in labels and labels[filename] != label:
                raise DatasetError(
                    f"{path}: line {line_number} labels {filename} {label!r}, but line "
                    f"{lines[filename]} labels it {labels[filename]!r}")
            labels[filename] = label
            lines.setdefault(filename, line_number)
        return labels
    return None


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def read_labelled_folder(
    folder: str | Path,
    alphabet: str | Alphabet | None = None,
    case_insensitive: bool = False,
) -> LabelledFolder:
    """Scan ``folder``: decode every image once, label it, and collect the files that fail.

    Labels come from ``labels.csv``/``labels.txt`` when the folder has one, else from file names.
    With ``alphabet`` given, a label with other symbols makes its file bad; otherwise the
    alphabet is inferred from the usable labels.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder of labelled images")
    if isinstance(alphabet, str):
        alphabet = Alphabet(alphabet.lower() if case_insensitive else alphabet)
    label_table = _read_label_file(root)
    files = _image_files(root)
    if label_table is not None:
        listed = set(label_table)
        files = [p for p in files if p.name in listed]
        missing = sorted(listed - {p.name for p in files})
    else:
        missing = []
    samples: list[Sample] = []
    bad = [BadFile(root / name, "listed in the label file but missing") for name in missing]
    digest = hashlib.sha256()
    for path in files:
        if label_table is not None:
            label = label_table[path.name]
        else:
            label = label_from_filename(path.name)
        if case_insensitive:
            label = label.lower()
        data = path.read_bytes()
        try:
            size = open_image(data).size  # decoded and upright, as training sees it
        except ImageError as error:
            bad.append(BadFile(path, str(error)))
            continue
        if not label:
            bad.append(BadFile(path, "empty label"))
            continue
        if alphabet is not None and alphabet.unknown(label):
            bad.append(BadFile(path, f"label {label!r} has symbols outside the alphabet: "
                                     f"{alphabet.unknown(label)!r}"))
            continue
        digest.update(f"{path.name}\0{label}\0".encode())
        digest.update(hashlib.sha256(data).digest())
        samples.append(Sample(path, label, size))
    if alphabet is None and samples:
        alphabet = Alphabet.from_labels(s.label for s in samples)
    return LabelledFolder(root, samples, bad, alphabet, digest.hexdigest()[:16])


def read_labelled_folders(
    folders: str | Path | Sequence[str | Path],
    alphabet: str | Alphabet | None = None,
    case_insensitive: bool = False,
    keep_alphabet: str | None = None,
) -> LabelledFolder:
    """One or several labelled folders read as one (the original set plus newly labelled
    images, say). The alphabet is ``alphabet``, or ``keep_alphabet`` (a model's, when
    fine-tuning it) extended by the labels' new symbols, or the labels' symbols."""
    paths = [folders] if isinstance(folders, (str, Path)) else list(folders)
    if not paths:
        raise DatasetError("no labelled folder given")
    parts = [read_labelled_folder(path, alphabet, case_insensitive) for path in paths]
    samples = [s for part in parts for s in part.samples]
    if len(parts) > 1 and len(set(map(str, (s.path for s in samples)))) != len(samples):
        raise DatasetError(f"{paths[0]}: a folder is given twice")
    labels = "".join(s.label for s in samples)
    if alphabet is not None:
        symbols = parts[0].alphabet
    elif keep_alphabet is not None:
        new = "".join(sorted(set(labels) - set(keep_alphabet)))
        symbols = Alphabet(keep_alphabet + new)
    else:
        symbols = Alphabet.from_labels(s.label for s in samples) if samples else None
    fingerprint = parts[0].fingerprint if len(parts) == 1 else hashlib.sha256(
        "\0".join(p.fingerprint for p in parts).encode()).hexdigest()[:16]
    return LabelledFolder(parts[0].root, samples, [b for p in parts for b in p.bad], symbols,
                          fingerprint)


def balance_folders(
    samples: Sequence[Sample], folders: Sequence[str | Path]
) -> tuple[list[Sample], list[int]]:
    """``samples`` with each folder's repeated so that every folder weighs about as much as
    the largest one (a few hundred new labels beside the original set), and each folder's
    repeat count. Samples outside every folder are kept once."""
    roots = [Path(folder).resolve() for folder in folders]
    groups: list[list[Sample]] = [[] for _ in roots]
    rest: list[Sample] = []
    for sample in samples:
        path = sample.path.resolve()
        owner = next((i for i, root in enumerate(roots) if path.is_relative_to(root)), None)
        (rest if owner is None else groups[owner]).append(sample)
    largest = max((len(group) for group in groups), default=0)
    repeats = [max(1, round(largest / len(group))) if group else 0 for group in groups]
    balanced = [s for group, n in zip(groups, repeats) for _ in range(n) for s in group]
    return balanced + rest, repeats


def split_samples(
    samples: Sequence[Sample], val_split: float, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic (train, validation) split: the same files, the same seed, the same split.

    Independent of listing order (samples are sorted by file name first).
    """
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    ordered = sorted(samples, key=lambda s: (s.path.name, s.label))
    if val_split == 0.0 or len(ordered) < 2:
        return list(ordered), []
    n_val = min(len(ordered) - 1, max(1, round(val_split * len(ordered))))
    order = np.random.default_rng(seed).permutation(len(ordered))
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(ordered) if i not in val_idx]
    val = [s for i, s in enumerate(ordered) if i in val_idx]
    return train, val
