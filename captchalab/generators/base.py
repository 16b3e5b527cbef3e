"""Synthetic captchas by scheme, and writing a labelled folder of them (in parallel)."""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import random
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from captchalab.data.annotations import ANNOTATIONS_FILE, write_centres
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.generators.drawing import Rendered, render_glyphs
from captchalab.generators.png import encode_png
from captchalab.generators.rings import render_rings
from captchalab.generators.scheme import Scheme, load_scheme, schemes

__all__ = ["ANNOTATIONS_FILE", "Rendered", "generate", "render", "schemes"]

CHUNK = 64  # images per task handed to a worker
UNSAFE_IN_NAMES = set('/\\:*?"<>|')  # not in file names on every system


def render(scheme: str | Path | Scheme, seed: int = 0, index: int = 0,
           rng: random.Random | None = None) -> Rendered:
    """Image ``index`` of ``scheme`` for ``seed`` (or one drawn from ``rng``): the same
    settings, ``name`` (it keys the random stream), seed and index always give the same
    image. A scheme with a ``[rings]`` table is drawn by seed 003's dedicated renderer."""
    scheme = load_scheme(scheme)
    if rng is None:
        rng = random.Random(f"{scheme.name}:{seed}:{index}")
    if scheme.layout == "universe":
        return scheme.render(rng)  # type: ignore[attr-defined]
    if scheme.rings is not None:
        return render_rings(scheme, rng)
    return render_glyphs(scheme, rng)


def _publish(path: Path, item: Rendered) -> None:
    """Write the PNG beside ``path`` and rename it into place: readers never see half a file.

    Unlike a model file there is no fsync per image (it would cost more than drawing it);
    ``generate`` writes annotations.jsonl, with fsync, after every image.
    """
    atomic_write_bytes(path, encode_png(item.image), sync=False)


def labels_in_names(scheme: Scheme) -> bool:
    """Whether labels can be file names (``226md_3.png``): not when the alphabet has a symbol
    unsafe in file names (``?`` of ``7+3=?``); the labels then go to ``labels.csv``."""
    return not set(scheme.alphabet) & UNSAFE_IN_NAMES


def _write_chunk(scheme: Scheme, seed: int, out: Path, start: int, stop: int) -> list[dict]:
    """Draw and write images ``start`` .. ``stop - 1``; their annotation rows."""
    rows = []
    named = labels_in_names(scheme)
    for index in range(start, stop):
        item = render(scheme, seed, index)
        name = f"{item.label}_{index}.png" if named else f"{index:06d}.png"
        _publish(out / name, item)
        rows.append({
            "file": name, "label": item.label,
            "centres": [[round(x, 2), round(y, 2)] for x, y in item.centres],
            "boxes": [list(b) for b in item.boxes],
        })
    return rows


_job: tuple[Scheme, int, Path] | None = None  # a worker process's scheme, seed and folder


def _start_worker(scheme: Scheme, seed: int, out: Path) -> None:
    global _job
    _job = (scheme, seed, out)


def _chunk_in_worker(span: tuple[int, int]) -> list[dict]:
    assert _job is not None
    return _write_chunk(*_job, *span)


def _context() -> multiprocessing.context.BaseContext:
    """Workers forked from a clean server process that has imported this module (started once
    per process): fast to start, and safe beside threads (torch, a progress bar)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def generate(scheme: str | Path | Scheme, count: int, out: str | Path, seed: int = 0,
             advance: Callable[[], None] | None = None, workers: int = 1) -> Path:
    """Write ``count`` images ``<label>_<n>.png`` and ``annotations.jsonl`` into ``out``
    (``<n>.png`` and ``labels.csv`` when labels hold symbols unsafe in file names).

    ``scheme`` is a preset name, a TOML path or a :class:`Scheme`. ``workers`` processes draw
    chunks of images; the files are the same for any number of workers.
    """
    if count < 1:
        raise ValueError(f"`count` must be at least 1, got {count}")
    if workers < 1:
        raise ValueError(f"`workers` must be at least 1, got {workers}")
    resolved = load_scheme(scheme)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = max(1, min(CHUNK, math.ceil(count / (4 * workers))))
    spans = [(start, min(start + size, count)) for start in range(0, count, size)]
    rows: list[dict] = []

    def collect(chunk: list[dict]) -> None:
        rows.extend(chunk)
        for _ in chunk if advance else ():
            advance()

    if workers == 1 or len(spans) == 1:
        for start, stop in spans:
            collect(_write_chunk(resolved, seed, out, start, stop))
    else:
        # an executor, unlike multiprocessing.Pool, fails instead of hanging if workers die
        with ProcessPoolExecutor(min(workers, len(spans)), _context(), _start_worker,
                                 (resolved, seed, out)) as executor:
            for chunk in executor.map(_chunk_in_worker, spans):
                collect(chunk)
    if not labels_in_names(resolved):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            [("filename", "label")] + [(row["file"], row["label"]) for row in rows])
        atomic_write_text(out / "labels.csv", buffer.getvalue())
    write_centres(out / ANNOTATIONS_FILE, rows)
    return out
