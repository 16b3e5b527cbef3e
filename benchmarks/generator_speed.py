"""Images/s of ``captchalab generate`` for each preset and a 200 x 50 scheme, 1 and 2 workers.

    python benchmarks/generator_speed.py [--count 4000] [--repeats 3] [--workers 1,2]
                                         [--dir benchmarks/runs]

Times ``generate`` end to end (worker start-up, drawing, PNG encoding, writing the files and
annotations.jsonl) into a fresh folder under ``--dir`` (removed afterwards), best of
``--repeats``, and prints a markdown report: the command, date, machine, load average, and
a table of images/s. Other work on the machine slows this down: the load average is printed
before and after. Creating files costs very different time on different file systems: pass
``--dir`` where the images would really go. On ext4, creating files within ~35 s after many
were deleted is several times slower (the kernel skips recently freed inodes one by one), so
no run's folder is deleted before the end; leave the disk quiet for a minute before running.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from captchalab.generators import generate, load_scheme, parse_scheme, schemes

# a typical small coloured scheme at 200 x 50: gradient, five warped glyphs, dots and lines
WAVE_200X50 = """
name = "wave200x50"
size = [200, 50]
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
length = 5
[background]
kind = "gradient"
colors = { min = "#c8c8c8", max = "#ffffff" }
[glyphs]
fonts = ["DejaVuSans.ttf", "DejaVuSerif-Bold.ttf"]
size = [26, 32]
rotation = 20
shear = 0.1
overlap = [0, 0.15]
jitter = 3
colors = { min = "#000000", max = "#785050" }
[warp.sine]
amplitude = [1, 3]
period = [60, 100]
[noise.dots]
count = [20, 40]
[noise.lines]
count = 2
thickness = [1, 2]
length = [40, 120]
"""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def images_per_second(scheme, count: int, workers: int, repeats: int, parent: Path) -> float:
    """Best of ``repeats`` end-to-end runs of ``generate`` into new folders in ``parent``
    (kept until the end: on ext4, creating files right after deleting many is far slower)."""
    best = 0.0
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="run_", dir=parent))
        start = time.perf_counter()
        generate(scheme, count, folder, seed=0, workers=workers)
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000, help="images per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell, best kept")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / "runs",
                        help="where the images are written (default: benchmarks/runs)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix="generator_speed_", dir=args.dir))
    workers = [int(w) for w in args.workers.split(",")]
    chosen = [load_scheme(name) for name in schemes()]
    chosen.append(parse_scheme(WAVE_200X50, "wave200x50"))
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    print("# Generator speed\n")
    print(f"- command: `{command}`")
    print(f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"- machine: {os.cpu_count()} CPUs, {_cpu_model()}, Python "
          f"{platform.python_version()}")
    print(f"- images written under: {args.dir.resolve()}")
    print(f"- load average (1, 5, 15 min) before: {_load()}\n")
    print("| scheme | size | " + " | ".join(f"{w} worker{'s' * (w > 1)}" for w in workers)
          + " |")
    print("|---|---|" + "---:|" * len(workers))
    for scheme in chosen:
        rates = [images_per_second(scheme, args.count, w, args.repeats, parent)
                 for w in workers]
        size = f"{scheme.size[0]}x{scheme.size[1]} {scheme.mode}"
        print(f"| {scheme.name} | {size} | " + " | ".join(f"{r:.0f}" for r in rates) + " |",
              flush=True)
    print(f"\nimages/s, end to end (PNG files and annotations.jsonl written), best of "
          f"{args.repeats} runs of {args.count} images.")
    print(f"- load average after: {_load()}")
    shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
