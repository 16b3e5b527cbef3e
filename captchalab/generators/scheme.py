"""Captcha schemes as small TOML files: strict parsing into frozen dataclasses.

A scheme names its canvas (``size``, ``mode``), its labels (``alphabet``, ``length``) and how
they are drawn: ``[background]``, ``[glyphs]``, ``[warp]``, ``[noise]`` and ``blur`` for the
default ``layout = "glyphs"``, or one ``[rings]`` table for ``layout = "rings"``. Every key
but ``size``, ``alphabet`` and ``length`` has a default. Unknown keys, wrong types and values
out of range raise a one-line :class:`SchemeError` naming the file and the dotted key.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from captchalab.generators.fonts import PACKAGES, font_path, load_font

RENDERER_VERSION = 1  # bump when the same settings start to give different images
PRESETS = resources.files("captchalab.generators") / "presets"
RGB = tuple[int, int, int]
Span = tuple[float, float]
IntSpan = tuple[int, int]
_COLOUR = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SchemeError(ValueError):
    """A scheme file that cannot be used; the message is one line naming the file and key."""


@dataclass(frozen=True)
class _Context:
    """Where values come from, for error messages and relative font paths."""

    source: str
    folder: Path | None

    def fail(self, key: str, requirement: str, value: Any = MISSING) -> SchemeError:
        got = "" if value is MISSING else f", got {_show(value)}"
        return SchemeError(f"{self.source}: {key} {requirement}{got}")


def _show(value: Any) -> str:
    """A value as it looks in TOML (strings quoted, tables named)."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


Convert = Callable[[Any, str, _Context], Any]


def _key(default: Any, convert: Convert) -> Any:
    """A dataclass field read from the TOML key of the same name with ``convert``."""
    if default is MISSING:
        return field(metadata={"convert": convert})
    if isinstance(default, type):
        return field(default_factory=default, metadata={"convert": convert})
    return field(default=default, metadata={"convert": convert})


# ---- value converters: (value, dotted key, context) -> parsed value, or raise SchemeError ----

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(low: float, high: float, unit: str = "", integer: bool = False) -> Convert:
    """A number (an integer if ``integer``) between ``low`` and ``high``."""
    kind = "an integer" if integer else "a number"

    def convert(value: Any, key: str, ctx: _Context) -> float:
        if not _is_number(value) or (integer and not isinstance(value, int)):
            raise ctx.fail(key, f"must be {kind}", value)
        if not low <= value <= high:
            raise ctx.fail(key, f"must be between {low:g} and {high:g}{unit}", value)
        return int(value) if integer else float(value)

    return convert


def _span(low: float, high: float, unit: str = "", integer: bool = False) -> Convert:
    """A number, or ``[min, max]`` with min <= max, each between ``low`` and ``high``."""
    one = _number(low, high, unit, integer)
    kind = "an integer" if integer else "a number"

    def convert(value: Any, key: str, ctx: _Context) -> tuple:
        if isinstance(value, list):
            if len(value) != 2:
                raise ctx.fail(key, f"must be {kind} or [min, max]", value)
            pair = (one(value[0], f"{key}[0]", ctx), one(value[1], f"{key}[1]", ctx))
            if pair[0] > pair[1]:
                raise ctx.fail(key, "must be [min, max] with min <= max", value)
            return pair
        if not _is_number(value):
            raise ctx.fail(key, f"must be {kind} or [min, max]", value)
        number = one(value, key, ctx)
        return (number, number)

    return convert


def _choice(*options: str) -> Convert:
    def convert(value: Any, key: str, ctx: _Context) -> str:
        if value not in options:
            raise ctx.fail(key, "must be one of " + ", ".join(json.dumps(o) for o in options),
                           value)
        return value

    return convert


def _int_list(low: int, high: int, unit: str = "") -> Convert:
    one = _number(low, high, unit, integer=True)

    def convert(value: Any, key: str, ctx: _Context) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise ctx.fail(key, "must be a non-empty list of integers", value)
        return tuple(one(v, f"{key}[{i}]", ctx) for i, v in enumerate(value))

    return convert


def _pair(low: int, high: int, unit: str = "") -> Convert:
    """Exactly two integers, e.g. ``size = [200, 50]``."""
    many = _int_list(low, high, unit)

    def convert(value: Any, key: str, ctx: _Context) -> tuple[int, int]:
        if not isinstance(value, list) or len(value) != 2:
            raise ctx.fail(key, "must be two integers [x, y]", value)
        return many(value, key, ctx)

    return convert


def _name(value: Any, key: str, ctx: _Context) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ctx.fail(key, "must be a name of letters, digits, '_', '.' and '-'", value)
    return value


def _alphabet(value: Any, key: str, ctx: _Context) -> str:
    """Symbols: printable, no spaces. Symbols unsafe in file names (``?``, ``*``, ...) are
    allowed: ``generate`` then lists the labels in ``labels.csv`` instead of the names."""
    if not isinstance(value, str) or not value:
        raise ctx.fail(key, "must be a non-empty string", value)
    bad = sorted({c for c in value if not c.isprintable() or c.isspace()})
    if bad:
        raise ctx.fail(key, "must not contain spaces or unprintable characters ("
                       + "".join(bad) + ")", value)
    if len(set(value)) != len(value):
        raise ctx.fail(key, "must not repeat characters", value)
    return value


def _colour(value: Any, key: str, ctx: _Context) -> RGB:
    """``"#rrggbb"``, ``"#rgb"`` or a grey level 0-255."""
    if _is_number(value) and isinstance(value, int) and 0 <= value <= 255:
        return (value, value, value)
    if isinstance(value, str) and _COLOUR.fullmatch(value):
        digits = value[1:] if len(value) == 7 else "".join(c * 2 for c in value[1:])
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    raise ctx.fail(key, 'must be a colour like "#1f3a93" or a grey level 0-255', value)


def _grey(value: Any, key: str, ctx: _Context) -> int:
    return _number(0, 255, integer=True)(value, key, ctx)


@dataclass(frozen=True)
class Palette:
    """Colours to draw from: one of ``choices``; each channel between ``low`` and ``high`` (or
    with ``shades`` one grey level between them); or with ``glyphs`` a colour of the image's
    characters."""

    choices: tuple[RGB, ...] = ()
    low: RGB | None = None
    high: RGB | None = None
    shades: bool = False
    glyphs: bool = False

    def pick(self, rng: random.Random, glyph_colours: Sequence[RGB] = ()) -> RGB:
        """One colour."""
        if self.glyphs:
            return rng.choice(glyph_colours) if glyph_colours else (0, 0, 0)
        if self.choices:
            return rng.choice(self.choices)
        assert self.low is not None and self.high is not None
        if self.shades:
            level = rng.randint(self.low[0], self.high[0])
            return (level, level, level)
        return tuple(rng.randint(a, b) for a, b in zip(self.low, self.high))  # type: ignore


def _palette(allow_glyphs: bool) -> Convert:
    """A colour, a list of colours, ``{min = .., max = ..}`` (grey levels as numbers give
    greys), or (for noise) ``"glyphs"``."""

    def convert(value: Any, key: str, ctx: _Context) -> Palette:
        if allow_glyphs and value == "glyphs":
            return Palette(glyphs=True)
        if isinstance(value, list):
            if not value:
                raise ctx.fail(key, "must list at least one colour", value)
            return Palette(choices=tuple(_colour(v, f"{key}[{i}]", ctx)
                                         for i, v in enumerate(value)))
        if isinstance(value, dict):
            unknown = set(value) - {"min", "max"}
            if unknown or len(value) != 2:
                raise ctx.fail(key, "as a table must be {min = colour, max = colour}", value)
            low, high = _colour(value["min"], f"{key}.min", ctx), _colour(value["max"],
                                                                          f"{key}.max", ctx)
            if any(a > b for a, b in zip(low, high)):
                raise ctx.fail(key, "must have min <= max in every channel", value)
            shades = all(isinstance(value[k], int) for k in ("min", "max"))
            return Palette(low=low, high=high, shades=shades)
        try:
            return Palette(choices=(_colour(value, key, ctx),))
        except SchemeError:
            extra = ', "glyphs"' if allow_glyphs else ""
            raise ctx.fail(key, "must be a colour, a list of colours, {min = .., max = ..}"
                           + extra, value) from None

    return convert


def _fonts(value: Any, key: str, ctx: _Context) -> tuple[str, ...]:
    """Font file names (found by fonts.font_path, or relative to the scheme file) or paths."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ctx.fail(key, "must be a font file name or a non-empty list of them", value)
    found = []
    for i, name in enumerate(names):
        where = key if isinstance(value, str) else f"{key}[{i}]"
        if not isinstance(name, str) or not name:
            raise ctx.fail(where, "must be a font file name", name)
        local = ctx.folder / name if ctx.folder else None
        try:
            path = str(local if local and local.is_file() else font_path(name))
            load_font(path, 12)
        except FileNotFoundError:
            package = PACKAGES.get(Path(name).name)
            raise ctx.fail(where, f"names no font found here or in matplotlib's fonts: "
                           f"{_show(name)}" + (f" (install Debian's {package}: apt-get "
                                               f"install {package})" if package else "")
                           ) from None
        except OSError:
            raise ctx.fail(where, f"is not a readable TrueType font: {_show(name)}") from None
        found.append(path)
    return tuple(found)


def _table(cls: type) -> Convert:
    def convert(value: Any, key: str, ctx: _Context) -> Any:
        return _build(cls, value, key, ctx)

    return convert


def _build(cls: type, table: Any, where: str, ctx: _Context) -> Any:
    """Instance of dataclass ``cls`` from TOML ``table``: unknown keys and bad values raise."""
    if not isinstance(table, dict):
        raise ctx.fail(where or "the file", "must be a table", table)
    known = {f.name: f for f in fields(cls) if "convert" in f.metadata}
    for name in table:
        if name not in known:
            label = f"[{where}]" if where else "the top level"
            raise SchemeError(f"{ctx.source}: unknown key {_dotted(where, name)} ({label} takes "
                              f"{', '.join(known)})")
    values = {}
    for name, spec in known.items():
        key = _dotted(where, name)
        if name in table:
            values[name] = spec.metadata["convert"](table[name], key, ctx)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ctx.fail(key, "is required")
    made = cls(**values)
    check = getattr(made, "check", None)
    if check:
        check(set(table), where, ctx)
    return made


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _only_for(given: set[str], where: str, ctx: _Context, kind: str, rules: dict[str, str]
              ) -> None:
    """Keys in ``rules`` may be given only when ``kind`` is the value they name."""
    for name, wanted in rules.items():
        if name in given and kind != wanted:
            raise ctx.fail(_dotted(where, name), f'applies to kind = "{wanted}" only')


# ---- the tables ----

@dataclass(frozen=True)
class Background:
    """``kind``: solid (one colour), gradient (two colours along ``angle``) or noise (a colour
    with a grey texture of amplitude ``texture`` and blob size ``grain`` px)."""

    kind: str = _key("solid", _choice("solid", "gradient", "noise"))
    colors: Palette = _key(Palette(choices=((255, 255, 255),)), _palette(False))
    angle: Span = _key((0.0, 360.0), _span(0, 360, " degrees"))
    texture: float = _key(24.0, _number(0, 128))
    grain: int = _key(2, _number(1, 64, " px", integer=True))

    def check(self, given: set[str], where: str, ctx: _Context) -> None:
        _only_for(given, where, ctx, self.kind,
                  {"angle": "gradient", "texture": "noise", "grain": "noise"})


@dataclass(frozen=True)
class Glyphs:
    """How each character is drawn and where it goes."""

    fonts: tuple[str, ...] = _key(("DejaVuSans.ttf",), _fonts)
    font_per: str = _key("character", _choice("character", "image"))
    size: IntSpan = _key((28, 32), _span(4, 400, " px", integer=True))
    rotation: float = _key(0.0, _number(0, 180, " degrees"))
    shear: float = _key(0.0, _number(0, 1))
    spacing: Span = _key((0.0, 0.0), _span(-200, 200, " px"))
    overlap: Span = _key((0.0, 0.0), _span(0, 0.9))
    jitter: float = _key(0.0, _number(0, 1000, " px"))
    margin: int = _key(4, _number(0, 1000, " px", integer=True))
    colors: Palette = _key(Palette(choices=((0, 0, 0),)), _palette(False))
    color_per: str = _key("character", _choice("character", "image"))


@dataclass(frozen=True)
class Sine:
    """Rows shift up and down by ``amplitude`` px along a sine of ``period`` px."""

    amplitude: Span = _key((0.0, 0.0), _span(0, 100, " px"))
    period: Span = _key((40.0, 80.0), _span(4, 10000, " px"))


@dataclass(frozen=True)
class Elastic:
    """Random smooth displacement of up to ``strength`` px on a grid of ``scale`` px."""

    strength: Span = _key((0.0, 0.0), _span(0, 50, " px"))
    scale: int = _key(12, _number(4, 1000, " px", integer=True))


@dataclass(frozen=True)
class Warp:
    sine: Sine = _key(Sine, _table(Sine))
    elastic: Elastic = _key(Elastic, _table(Elastic))

    @property
    def active(self) -> bool:
        return self.sine.amplitude[1] > 0 or self.elastic.strength[1] > 0


@dataclass(frozen=True)
class Dots:
    count: IntSpan = _key((0, 0), _span(0, 100000, integer=True))
    radius: IntSpan = _key((0, 0), _span(0, 20, " px", integer=True))
    colors: Palette = _key(Palette(glyphs=True), _palette(True))


@dataclass(frozen=True)
class Shapes:
    """What all stroked noise shares: how many, how thick, which colours."""

    count: IntSpan = _key((0, 0), _span(0, 1000, integer=True))
    thickness: IntSpan = _key((1, 1), _span(1, 50, " px", integer=True))
    colors: Palette = _key(Palette(glyphs=True), _palette(True))


@dataclass(frozen=True)
class Lines(Shapes):
    length: Span = _key((20.0, 80.0), _span(1, 10000, " px"))


@dataclass(frozen=True)
class Ellipses(Shapes):
    width: Span = _key((10.0, 40.0), _span(1, 10000, " px"))
    height: Span = _key((10.0, 40.0), _span(1, 10000, " px"))


@dataclass(frozen=True)
class Arcs(Ellipses):
    extent: Span = _key((90.0, 270.0), _span(1, 360, " degrees"))


@dataclass(frozen=True)
class Strike(Shapes):
    """A wavy line through the middle of the text, from its first to its last character."""

    amplitude: Span = _key((2.0, 5.0), _span(0, 1000, " px"))
    period: Span = _key((60.0, 120.0), _span(4, 10000, " px"))
    offset: Span = _key((-4.0, 4.0), _span(-1000, 1000, " px"))


@dataclass(frozen=True)
class Noise:
    """Drawn after the warp, in this order: ellipses, arcs, lines, strike, dots."""

    ellipses: Ellipses = _key(Ellipses, _table(Ellipses))
    arcs: Arcs = _key(Arcs, _table(Arcs))
    lines: Lines = _key(Lines, _table(Lines))
    strike: Strike = _key(Strike, _table(Strike))
    dots: Dots = _key(Dots, _table(Dots))


@dataclass(frozen=True)
class Text:
    """What a captcha says: symbols of the alphabet (``kind = "symbols"``), or an arithmetic
    question (``kind = "arithmetic"``): two or three whole numbers of ``operands`` with
    ``operators`` between them, then ``=?`` or ``=`` (``question``). Division is exact and
    a difference is never negative, so every question has a whole-number answer."""

    kind: str = _key("symbols", _choice("symbols", "arithmetic"))
    operators: str = _key("+-×", _alphabet)
    operands: IntSpan = _key((0, 20), _span(0, 9999, integer=True))
    terms: IntSpan = _key((2, 2), _span(2, 3, integer=True))
    question: str = _key("either", _choice("=?", "=", "either", "none"))

    def check(self, given: set[str], where: str, ctx: _Context) -> None:
        _only_for(given, where, ctx, self.kind, {name: "arithmetic" for name in
                                                 ("operators", "operands", "terms",
                                                  "question")})
        unknown = sorted(set(self.operators) - set("+-×÷*x/"))
        if unknown:
            raise ctx.fail(f"{where}.operators", "takes + - × ÷ * x /, not "
                           + "".join(unknown), self.operators)

    def longest(self) -> int:
        """The longest question this table draws, in characters."""
        return (self.terms[1] * len(str(self.operands[1])) + self.terms[1] - 1
                + len(self.question if self.question in ("=?", "=") else "=?"))


@dataclass(frozen=True)
class Rings:
    """The dedicated rings layout: see captchalab/generators/rings.py."""

    positions: tuple[int, ...] = _key(MISSING, _int_list(-1000, 10000, " px"))
    y: IntSpan = _key(MISSING, _span(-1000, 10000, " px", integer=True))
    rotation: float = _key(45.0, _number(0, 180, " degrees"))
    font: tuple[str, ...] = _key(("DejaVuSans.ttf",), _fonts)
    font_size: int = _key(27, _number(4, 400, " px", integer=True))
    glyph_box: tuple[int, int] = _key((20, 28), _pair(1, 1000, " px"))
    background: int = _key(221, _grey)
    ink: int = _key(0, _grey)
    count: int = _key(15, _number(0, 1000, integer=True))
    step: tuple[int, int] = _key((16, 8), _pair(0, 1000, " px"))
    pepper: int = _key(500, _number(0, 1000000, integer=True))

    def check(self, given: set[str], where: str, ctx: _Context) -> None:
        if len(self.font) != 1:
            raise ctx.fail(f"{where}.font", "must name one font")


_GLYPH_TABLES = ("background", "glyphs", "warp", "noise", "blur", "text")


class Canvas:
    """``width`` and ``height`` of a ``size`` pair (schemes and the universe)."""

    size: tuple[int, int]

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


@dataclass(frozen=True)
class Scheme(Canvas):
    """A resolved captcha scheme; ``captchalab.generators.render`` draws its captchas."""

    size: tuple[int, int] = _key(MISSING, _pair(8, 4096, " px"))
    alphabet: str = _key(MISSING, _alphabet)
    length: IntSpan = _key(MISSING, _span(1, 64, integer=True))
    name: str = _key("scheme", _name)
    mode: str = _key("RGB", _choice("RGB", "L"))
    blur: Span = _key((0.0, 0.0), _span(0, 20, " px"))
    background: Background = _key(Background, _table(Background))
    glyphs: Glyphs = _key(Glyphs, _table(Glyphs))
    warp: Warp = _key(Warp, _table(Warp))
    noise: Noise = _key(Noise, _table(Noise))
    text: Text = _key(Text, _table(Text))
    rings: Rings | None = _key(None, _table(Rings))
    source: str = field(default="", compare=False)

    def check(self, given: set[str], where: str, ctx: _Context) -> None:
        if self.rings is not None:
            for name in _GLYPH_TABLES:
                if name in given:
                    raise ctx.fail(name, "does not apply to a scheme with a [rings] table")
            count = len(self.rings.positions)
            if self.length != (count, count):
                raise ctx.fail("length", f"must be {count}, one per rings.positions entry",
                               list(self.length) if self.length[0] != self.length[1]
                               else self.length[0])
        if self.text.kind == "arithmetic":
            needed = set("0123456789") | set(self.text.operators) | {
                "=?": set("=?"), "=": {"="}, "either": set("=?"), "none": set()}[
                    self.text.question]
            missing = "".join(sorted(needed - set(self.alphabet)))
            if missing:
                raise ctx.fail("alphabet", f"must hold every symbol of the questions; add "
                               f"{missing}", self.alphabet)
            if self.length[1] < self.text.longest():
                raise ctx.fail("length", f"must allow questions of up to "
                               f"{self.text.longest()} characters", list(self.length))

    @property
    def layout(self) -> str:
        """``"rings"`` (seed 003's dedicated renderer) when the scheme has a ``[rings]``
        table, else ``"glyphs"``."""
        return "rings" if self.rings is not None else "glyphs"

    def fingerprint(self) -> str:
        """Stable hash of everything that decides the images (fonts by content, not path)."""
        settings = asdict(self)
        settings.pop("source")
        settings["layout"] = self.layout
        settings["renderer"] = RENDERER_VERSION
        settings["glyphs"]["fonts"] = [_font_identity(f) for f in self.glyphs.fonts]
        if self.rings:
            settings["rings"]["font"] = [_font_identity(f) for f in self.rings.font]
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

@lru_cache(maxsize=64)
def _font_identity(name: str) -> str:
    """A font by file name and content, the same on every machine that has the same file."""
    path = font_path(name)
    return f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def parse_scheme(text: str, source: str = "scheme.toml", folder: Path | None = None,
                 name: str | None = None) -> Scheme:
    """Scheme from TOML ``text``; ``source`` names it in errors, fonts are also looked up in
    ``folder``, and ``name`` is the default for the ``name`` key."""
    ctx = _Context(source, folder)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SchemeError(f"{source}: not valid TOML: {error}") from None
    if name and "name" not in table:
        table["name"] = name if _NAME.fullmatch(name) else "scheme"
    return replace(_build(Scheme, table, "", ctx), source=source)


def schemes() -> list[str]:
    """Names of the built-in presets (``universe``, every image its own random scheme, is
    loaded by name too)."""
    return sorted(p.name[:-5] for p in PRESETS.iterdir() if p.name.endswith(".toml"))


@lru_cache(maxsize=32)
def _preset(name: str) -> Scheme:
    text = PRESETS.joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_scheme(text, f"{name}.toml", name=name)


def load_scheme(scheme: str | Path | Scheme) -> Scheme:
    """A preset by name (see :func:`schemes`), a TOML file by path, or ``scheme`` itself."""
    if isinstance(scheme, Scheme) or getattr(scheme, "layout", None) == "universe":
        return scheme  # type: ignore[return-value]
    text = str(scheme)
    if text == "universe":
        from captchalab.generators.universe import UNIVERSE

        return UNIVERSE  # type: ignore[return-value]
    if isinstance(scheme, str) and text in schemes():
        return _preset(text)
    path = Path(scheme)
    if not path.is_file():
        if path.suffix != ".toml" and len(path.parts) == 1:
            raise SchemeError(f"unknown captcha scheme {text!r} (built-in: "
                              f"{', '.join(schemes())}, universe; or give a .toml file)")
        raise SchemeError(f"{text}: no such scheme file")
    try:
        body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SchemeError(f"{text}: cannot read the scheme file ({error})") from None
    return parse_scheme(body, text, path.parent, path.stem)
