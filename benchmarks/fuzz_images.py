"""Fuzz run of the image loading path: mutated PNG, JPEG, GIF, BMP, WebP and TIFF files.

Each case starts from a valid captcha-sized image in one of several formats and modes and
applies random mutations (flipped bytes, truncation, inserted or repeated runs, huge
declared sizes); most PNG cases then get their chunk checksums recomputed, so that the
damage reaches the decoder instead of stopping at the CRC check. Loading it the way every
command and the service do (``open_image`` + ``Preprocessing.load``) must either give a
model-sized uint8 array or raise ``ImageError``; anything else is a finding, saved under
``--out`` for a regression test.

    python benchmarks/fuzz_images.py --minutes 10 --out benchmarks/runs/fuzz
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import struct
import time
import traceback
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from captchalab.data.preprocess import ImageError, Preprocessing

PREPROCESSING = Preprocessing(height=32, width=128)


def seed_images() -> dict[str, bytes]:
    """Valid images of several formats and modes, about captcha size."""
    rng = np.random.default_rng(0)
    grey = Image.fromarray(rng.integers(0, 256, (50, 200), dtype=np.uint8))
    rgb = Image.merge("RGB", [grey, grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grey])
    rgba = rgb.copy()
    rgba.putalpha(grey)

    def encode(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [grey, grey.rotate(5)]
    return {
        "png-L": encode(grey, "PNG"), "png-RGBA": encode(rgba, "PNG"),
        "png-P": encode(rgb.convert("P"), "PNG"),
        "png-I16": encode(Image.fromarray(np.asarray(grey, np.uint16) * 257), "PNG"),
        "jpeg-RGB": encode(rgb, "JPEG", quality=80),
        "jpeg-CMYK": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg-exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        "gif-anim": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp": encode(rgb, "BMP"), "webp": encode(rgb, "WEBP"),
        "tiff": encode(rgb, "TIFF", compression="tiff_lzw"),
    }


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four random mutations of ``data``."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(0, 6))
        at = int(rng.integers(0, max(len(out), 1)))
        if kind == 0:  # flip a few bytes
            for _ in range(int(rng.integers(1, 9))):
                out[int(rng.integers(0, len(out)))] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncate
            del out[at:]
        elif kind == 2:  # insert random bytes
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif kind == 3:  # repeat a run
            out[at:at] = out[at:at + int(rng.integers(1, 256))] * int(rng.integers(2, 16))
        elif kind == 4 and len(out) >= at + 4:  # a huge or odd 32-bit field (sizes, lengths)
            out[at:at + 4] = struct.pack(">I", int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF,
                                                                0xFFFFFFFF, 100000])))
        elif kind == 5 and len(out) >= at + 2:  # a 16-bit field
            out[at:at + 2] = struct.pack("<H", int(rng.choice([0, 1, 0xFFFF, 40000])))
        if not out:
            break
    return bytes(out)


def repair_png_checksums(data: bytes) -> bytes:
    """Recompute each PNG chunk's CRC, so a mutation reaches the decoder behind the check."""
    out, at = bytearray(data), 8
    while at + 12 <= len(out):
        length = struct.unpack(">I", out[at:at + 4])[0]
        end = at + 8 + length
        if end + 4 > len(out):
            break
        out[end:end + 4] = struct.pack(">I", zlib.crc32(out[at + 4:end]))
        at = end + 4
    return bytes(out)


def check(data: bytes) -> str:
    """'ok' or 'refused' (ImageError); raises anything else."""
    try:
        pixels = PREPROCESSING.load(data)
    except ImageError:
        return "refused"
    if pixels.shape != (PREPROCESSING.height, PREPROCESSING.width) or pixels.dtype != np.uint8:
        raise AssertionError(f"wrong output {pixels.shape} {pixels.dtype}")
    return "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/fuzz"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = seed_images()
    names = sorted(seeds)
    rng = np.random.default_rng(args.seed)
    counts = {name: {"ok": 0, "refused": 0, "finding": 0} for name in names}
    slowest, findings = (0.0, ""), []
    stop = time.monotonic() + args.minutes * 60
    cases = 0
    while time.monotonic() < stop:
        name = names[cases % len(names)]
        data = mutate(seeds[name], rng)
        if name.startswith("png") and cases % 4:  # most PNG cases pass the CRC check
            data = repair_png_checksums(data)
        started = time.perf_counter()
        try:
            outcome = check(data)
        except Exception as error:  # a finding: keep the input and the traceback
            outcome = "finding"
            path = args.out / f"finding_{len(findings)}_{name}.bin"
            path.write_bytes(data)
            findings.append({"seed": name, "file": str(path),
                             "error": f"{type(error).__name__}: {error}",
                             "where": traceback.format_exc().splitlines()[-3].strip()})
        elapsed = time.perf_counter() - started
        slowest = max(slowest, (elapsed, name))
        counts[name][outcome] += 1
        cases += 1
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "minutes": args.minutes, "seed": args.seed, "cases": cases,
              "findings": findings, "slowest_case_s": round(slowest[0], 4),
              "slowest_seed": slowest[1],
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "per_seed": counts}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "per_seed"}, indent=2))


if __name__ == "__main__":
    main()
