"""The one preprocessing definition: colour -> grey, (invert, straighten,) resize, normalise.

Training, evaluation, prediction (and every later runtime) call this module and nothing
else, with the parameters stored in the model file, so they cannot drift apart.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from captchalab.data.straighten import straighten

ImageInput = str | Path | bytes | bytearray | Image.Image | np.ndarray

DEFAULT_HEIGHT = 32  # the least input height a fitted preprocessing picks
MIN_GLYPH_WIDTH = 25  # input pixels of width per character that the fitted height keeps
MIN_GLYPH_WIDTH_BOTH_CASES = 32  # ... where labels hold a letter in both cases (o/O: by size)
MAX_FITTED_HEIGHT = 64  # the most it picks (the network's cost grows with the input's area)
_WIDTH_MULTIPLE = 4


# decoders exposed to files and uploads; others (TIFF, PSD, ...) are refused unread
READ_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
MAX_PIXELS = 50_000_000  # a larger declared size is refused before decoding (a bomb)
# Pillow warns when it opens a file declaring over 89 M pixels; _decode refuses those
# (over MAX_PIXELS) itself, with a one-line error, so the warning is only noise on stderr
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_ORIENTATION = 0x0112  # the EXIF tag saying how a camera image must be turned


class ImageError(ValueError):
    """An image that cannot be read; the message says why in a few words."""


class ImageTooLarge(ImageError):
    """An image whose declared size is over the pixel limit (checked before decoding)."""


def _decode(opener, max_pixels: int) -> Image.Image:
    """Open, check the declared size, decode, and apply the EXIF orientation."""
    try:
        with opener() as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"{width}x{height} pixels, over the limit of {max_pixels}")
            image.load()
            if image.getexif().get(_ORIENTATION, 1) != 1:
                return ImageOps.exif_transpose(image)  # turned upright
            return image
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge("declared size over the decompression-bomb limit") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (PNG, JPEG, GIF, BMP or WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ImageError(f"corrupt or truncated image ({reason})") from None


def open_image(source: ImageInput, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A decoded, upright PIL image from a path, encoded bytes, a PIL image or a uint8/float
    numpy array; an :class:`ImageError` (one line, no file name) when it cannot be read."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty file")
        data = bytes(source)
        return _decode(lambda: Image.open(io.BytesIO(data), formats=READ_FORMATS), max_pixels)
    if isinstance(source, (str, Path)):
        if Path(source).is_file() and Path(source).stat().st_size == 0:
            raise ImageError("empty file")
        return _decode(lambda: Image.open(source, formats=READ_FORMATS), max_pixels)
    if isinstance(source, np.ndarray):
        array = source
        if array.dtype != np.uint8:
            scale = 255.0 if array.size and float(np.nanmax(array)) <= 1.0 else 1.0
            array = np.clip(np.nan_to_num(array.astype(np.float32)) * scale, 0, 255)
            array = array.astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ValueError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}")
        return Image.fromarray(array)
    raise TypeError(f"cannot read an image from {type(source).__name__}")


GREY_MODES = ("luma", "darkest")


def to_grey(image: Image.Image, background: int = 255, mode: str = "luma") -> Image.Image:
    """Grey ('L') image; transparent pixels are laid over a plain ``background``, 16-bit and
    integer images are scaled to 8 bits rather than clipped.

    ``mode`` ``"luma"`` is the usual brightness; ``"darkest"`` takes each pixel's darkest
    colour channel, so a pale coloured glyph on a white page (pale yellow is almost white
    in brightness) keeps its contrast.
    """
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    opaque = image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] == 255
    if image.mode in ("RGBA", "LA") and not opaque:  # an opaque one is its own composite
        base = Image.new("RGBA", image.size, (background, background, background, 255))
        image = Image.alpha_composite(base, image.convert("RGBA"))
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8))
    if mode == "darkest" and image.mode not in ("L", "1"):
        return Image.fromarray(np.asarray(image.convert("RGB")).min(axis=2))
    return image.convert("L")


def both_cases(symbols: Iterable[str]) -> bool:
    """Whether ``symbols`` hold a letter in both cases (``o`` and ``O``): a case-sensitive
    reading, where some pairs differ only in size."""
    present = set(symbols)
    return any(s.swapcase() != s and s.swapcase() in present for s in present)


def fitted_height(sizes: Sequence[tuple[int, int]], lengths: Sequence[int] = (),
                  case_sensitive: bool = False) -> int:
    """The input height that keeps MIN_GLYPH_WIDTH pixels of width per character
    (MIN_GLYPH_WIDTH_BOTH_CASES when ``case_sensitive``; labels of ``lengths``, on images of
    the median aspect ratio): DEFAULT_HEIGHT at least, raised where narrow glyphs need it,
    but never above the images' own median height (no upscaling beyond the default) nor
    MAX_FITTED_HEIGHT; a multiple of 4."""
    aspect = float(np.median([w / h for w, h in sizes]))
    native = float(np.median([h for _, h in sizes]))
    characters = float(np.mean(lengths)) if len(lengths) else 0.0
    glyph_width = MIN_GLYPH_WIDTH_BOTH_CASES if case_sensitive else MIN_GLYPH_WIDTH
    needed = math.ceil(glyph_width * characters / aspect / 4) * 4
    return int(max(DEFAULT_HEIGHT, min(needed, native - native % 4, MAX_FITTED_HEIGHT)))


@dataclass(frozen=True)
class Preprocessing:
    """Grey, resize to ``height`` x ``width``, then ``(pixel / 255 - mean) / std``.

    ``grey`` says how colour becomes grey; ``invert`` turns light text on a dark page into
    dark on light; ``deskew`` then levels the text's midline and crops to a band of
    normalised text height (seed 002).
    """

    height: int = DEFAULT_HEIGHT
    width: int = 128
    mean: float = 0.5
    std: float = 0.5
    background: int = 255
    invert: bool = False
    deskew: bool = False
    grey: str = "luma"  # how colour becomes grey: "luma" or "darkest" (see to_grey)

    def __post_init__(self) -> None:
        if self.grey not in GREY_MODES:
            raise ValueError(f"unknown grey mode {self.grey!r} (known: {', '.join(GREY_MODES)})")

    @classmethod
    def fit(
        cls, sizes: Sequence[tuple[int, int]], height: int | None = DEFAULT_HEIGHT,
        lengths: Sequence[int] = (), case_sensitive: bool = False,
    ) -> Preprocessing:
        """Pick the width that keeps the median aspect ratio of ``(width, height)`` sizes;
        ``height`` None picks it too (:func:`fitted_height`, from ``lengths`` of labels and
        whether they are ``case_sensitive``)."""
        if not sizes:
            raise ValueError("no image sizes to fit the preprocessing to")
        if height is None:
            height = fitted_height(sizes, lengths, case_sensitive)
        aspect = float(np.median([w / h for w, h in sizes]))
        width = int(round(aspect * height / _WIDTH_MULTIPLE)) * _WIDTH_MULTIPLE
        return cls(height=height, width=max(_WIDTH_MULTIPLE * 4, width))

    def with_statistics(self, pixels: np.ndarray) -> Preprocessing:
        """A copy whose mean/std are measured on ``pixels`` (uint8 arrays from :meth:`load`)."""
        values = pixels.astype(np.float32) / 255.0
        return replace(self, mean=round(float(values.mean()), 6),
                       std=round(max(float(values.std()), 1e-3), 6))

    def load(self, source: ImageInput) -> np.ndarray:
        """One image as a ``(height, width)`` uint8 array: grey and resized."""
        grey = to_grey(open_image(source), self.background, self.grey)
        if self.invert:
            grey = ImageOps.invert(grey)
        if self.deskew:
            grey = straighten(grey)
        if grey.size != (self.width, self.height):
            grey = grey.resize((self.width, self.height), Image.Resampling.BILINEAR)
        return np.asarray(grey, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` uint8 -> ``(N, 1, H, W)`` float32 model input."""
        values = pixels.astype(np.float32) * np.float32(1.0 / 255.0)
        values = (values - np.float32(self.mean)) / np.float32(self.std)
        return values[:, None, :, :]

    def __call__(self, sources: Iterable[ImageInput]) -> np.ndarray:
        """A normalised ``(N, 1, H, W)`` float32 batch ready for the network."""
        return self.normalize(np.stack([self.load(s) for s in sources]))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})
