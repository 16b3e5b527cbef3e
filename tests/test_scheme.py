"""Scheme TOML files: defaults, every kind of validation error, presets, fingerprints."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import numpy as np
import pytest

from captchalab.generators import SchemeError, load_scheme, parse_scheme, render, schemes
from captchalab.generators.fonts import font_path
from captchalab.generators.scheme import tomllib

MINIMAL = 'size = [120, 40]\nalphabet = "abc123"\nlength = 4\n'

FULL = MINIMAL + """
name = "full"
mode = "L"
blur = [0, 0.5]

[background]
kind = "gradient"
colors = ["#ffffff", 200, "#eee"]
angle = [0, 90]

[glyphs]
fonts = ["DejaVuSans.ttf", "DejaVuSerif-Bold.ttf"]
font_per = "image"
size = [20, 26]
rotation = 20
shear = 0.3
spacing = [-2, 2]
overlap = [0, 0.2]
jitter = 3
margin = 2
colors = { min = "#000000", max = "#404040" }
color_per = "character"

[warp.sine]
amplitude = [1, 2]
period = [40, 60]

[warp.elastic]
strength = 1.5
scale = 10

[noise.dots]
count = [10, 20]
radius = [0, 1]
colors = "glyphs"

[noise.lines]
count = 1
thickness = 1
length = [10, 30]
colors = 0

[noise.arcs]
count = [0, 1]
width = [20, 60]
height = [10, 30]
extent = [90, 180]

[noise.ellipses]
count = 1
thickness = [1, 2]

[noise.strike]
count = 1
thickness = 2
amplitude = [1, 3]
period = [40, 80]
offset = [-2, 2]
colors = { min = 0, max = 80 }
"""


def error(text: str, source: str = "bad.toml") -> str:
    with pytest.raises(SchemeError) as caught:
        parse_scheme(text, source)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{source}: ")
    return message


def test_minimal_scheme_gets_defaults_for_everything_else():
    scheme = parse_scheme(MINIMAL, "mini.toml", name="mini")
    assert scheme.name == "mini" and scheme.size == (120, 40) and scheme.mode == "RGB"
    assert scheme.alphabet == "abc123" and scheme.length == (4, 4)
    assert scheme.layout == "glyphs" and scheme.background.kind == "solid"
    assert not scheme.warp.active and scheme.noise.dots.count == (0, 0)
    item = render(scheme, seed=0, index=0)
    assert item.image.size == (120, 40) and len(item.label) == 4


def test_every_key_of_the_full_example_is_read():
    scheme = parse_scheme(FULL, "full.toml")
    assert scheme.name == "full" and scheme.mode == "L" and scheme.blur == (0.0, 0.5)
    assert scheme.background.colors.choices == ((255, 255, 255), (200, 200, 200),
                                                (238, 238, 238))
    assert scheme.glyphs.size == (20, 26) and scheme.glyphs.rotation == 20.0
    assert [p.rsplit("/", 1)[-1] for p in scheme.glyphs.fonts] == ["DejaVuSans.ttf",
                                                                   "DejaVuSerif-Bold.ttf"]
    assert scheme.glyphs.colors.high == (64, 64, 64) and not scheme.glyphs.colors.shades
    assert scheme.noise.strike.colors.shades  # grey levels as numbers give greys
    assert scheme.warp.elastic.strength == (1.5, 1.5) and scheme.noise.dots.colors.glyphs
    for index in range(5):
        item = render(scheme, seed=1, index=index)
        assert item.image.mode == "L" and item.image.size == (120, 40)
        assert len(item.centres) == len(item.boxes) == len(item.label) == 4


@pytest.mark.parametrize("text, expected", [
    (MINIMAL + "colour = 1\n", "unknown key colour (the top level takes size, alphabet"),
    (MINIMAL + "[glyphs]\nrotaton = 3\n", "unknown key glyphs.rotaton ([glyphs] takes fonts"),
    (MINIMAL + "[noise.dots]\nsize = 2\n", "unknown key noise.dots.size"),
    (MINIMAL + "[warp.swirl]\nstrength = 2\n", "unknown key warp.swirl"),
    (MINIMAL + '[glyphs]\nrotation = "lots"\n', 'glyphs.rotation must be a number, got "lots"'),
    (MINIMAL + "[glyphs]\nshear = true\n", "glyphs.shear must be a number, got true"),
    (MINIMAL + "[glyphs]\nrotation = 400\n",
     "glyphs.rotation must be between 0 and 180 degrees, got 400"),
    (MINIMAL + "[glyphs]\nsize = [40, 20]\n", "glyphs.size must be [min, max] with min <= max"),
    (MINIMAL + "[glyphs]\nsize = [20, 30, 40]\n", "glyphs.size must be an integer or [min, max]"),
    (MINIMAL + "[glyphs]\nsize = [20, 30.5]\n", "glyphs.size[1] must be an integer, got 30.5"),
    (MINIMAL + "[glyphs]\noverlap = [0, 2]\n", "glyphs.overlap[1] must be between 0 and 0.9"),
    (MINIMAL + "[glyphs]\nfont_per = \"word\"\n", 'glyphs.font_per must be one of "character"'),
    (MINIMAL + "glyphs = 3\n", "glyphs must be a table, got 3"),
    (MINIMAL + 'mode = "CMYK"\n', 'mode must be one of "RGB", "L", got "CMYK"'),
    ('size = [120, 40]\nlength = 4\n', "alphabet is required"),
    ('size = [120]\nalphabet = "ab"\nlength = 4\n', "size must be two integers [x, y]"),
    ('size = [120, 40]\nalphabet = "ab"\nlength = 4.5\n', "length must be an integer"),
    ('size = [120, 40]\nalphabet = "a b"\nlength = 4\n', "alphabet must not contain spaces"),
    (MINIMAL + '[text]\nkind = "arithmetic"\n', "alphabet must hold every symbol of the "
     "questions; add"),
    (MINIMAL + '[text]\noperands = [1, 9]\n', 'text.operands applies to kind = "arithmetic"'),
    ('size = [120, 40]\nalphabet = "abca"\nlength = 4\n', "alphabet must not repeat"),
    (MINIMAL + '[glyphs]\ncolors = ["#000", "#12345"]\n',
     'glyphs.colors[1] must be a colour like "#1f3a93" or a grey level 0-255, got "#12345"'),
    (MINIMAL + '[glyphs]\ncolors = "glyphs"\n', "glyphs.colors must be a colour, a list"),
    (MINIMAL + '[noise.dots]\ncolors = { min = "#ffffff", max = "#000000" }\n',
     "noise.dots.colors must have min <= max in every channel"),
    (MINIMAL + '[noise.dots]\ncolors = { low = 0, high = 9 }\n',
     "noise.dots.colors as a table must be {min = colour, max = colour}"),
    (MINIMAL + '[glyphs]\nfonts = ["DejaVuSans.ttf", "NoSuchFont.ttf"]\n',
     'glyphs.fonts[1] names no font found here or in matplotlib\'s fonts: "NoSuchFont.ttf"'),
    (MINIMAL + "[background]\nangle = 30\n", 'background.angle applies to kind = "gradient"'),
    (MINIMAL + 'layout = "rings"\n', "unknown key layout"),
    ('size = [99, 40]\nalphabet = "12"\nlength = 2\n[glyphs]\nsize = 9\n'
     '[rings]\npositions = [1, 50]\ny = 3\n', "glyphs does not apply to a scheme with a [rings]"),
    ('size = [99, 40]\nalphabet = "12"\nlength = 3\n'
     '[rings]\npositions = [1, 50]\ny = 3\n', "length must be 2, one per rings.positions entry"),
    ("size = [120, 40\n", "not valid TOML"),
])
def test_bad_values_name_the_file_and_the_dotted_key(text, expected):
    assert expected in error(text)


def test_a_file_that_is_not_a_font_is_named(tmp_path):
    (tmp_path / "fake.ttf").write_text("not a font")
    with pytest.raises(SchemeError, match=r'glyphs.fonts\[0\] is not a readable TrueType font'):
        parse_scheme(MINIMAL + '[glyphs]\nfonts = ["fake.ttf"]\n', "x.toml", tmp_path)


def test_load_scheme_by_path_with_a_font_beside_it(tmp_path):
    shutil.copy(font_path("DejaVuSans.ttf"), tmp_path / "mine.ttf")
    path = tmp_path / "my-scheme.toml"
    path.write_text(MINIMAL + '[glyphs]\nfonts = "mine.ttf"\n')
    scheme = load_scheme(path)
    assert scheme.name == "my-scheme" and scheme.glyphs.fonts == (str(tmp_path / "mine.ttf"),)
    assert load_scheme(str(path)).fingerprint() == scheme.fingerprint()
    assert render(scheme, seed=0, index=0).image.size == (120, 40)


def test_missing_files_and_unknown_names_are_one_line_errors(tmp_path):
    with pytest.raises(SchemeError, match=r"nope\.toml: no such scheme file"):
        load_scheme(tmp_path / "nope.toml")
    with pytest.raises(SchemeError,
                       match=r"unknown captcha scheme 'nope' \(built-in: arithmetic, classic"):
        load_scheme("nope")
    (tmp_path / "bad.toml").write_text(MINIMAL + "[glyphs]\nrotation = 400\n")
    with pytest.raises(ValueError, match=r"bad\.toml: glyphs\.rotation must be between"):
        load_scheme(tmp_path / "bad.toml")


def test_fingerprint_is_stable_and_follows_the_settings(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s.toml").write_text(FULL)
    first, second = load_scheme(tmp_path / "a" / "s.toml"), load_scheme(tmp_path / "b" / "s.toml")
    assert first.fingerprint() == second.fingerprint()  # where the file lies does not matter
    assert len(first.fingerprint()) == 16
    changed = parse_scheme(FULL.replace("rotation = 20", "rotation = 21"))
    assert changed.fingerprint() != first.fingerprint()
    assert load_scheme("classic").fingerprint() != load_scheme("strike").fingerprint()


@pytest.mark.parametrize("name", schemes())
def test_presets_load_and_render_as_declared(name):
    if name == "hanzi":
        try:
            font_path("wqy-microhei.ttc")
        except FileNotFoundError:
            pytest.skip("the hanzi preset needs Debian's fonts-wqy-microhei (.ci/run installs it)")
    assert name in schemes()
    scheme = load_scheme(name)
    assert scheme.name == name and scheme is load_scheme(name)  # parsed once
    lengths = set()
    for index in range(20):
        item = render(scheme, seed=2, index=index)
        assert item.image.size == scheme.size and item.image.mode == scheme.mode
        assert set(item.label) <= set(scheme.alphabet)
        assert scheme.length[0] <= len(item.label) <= scheme.length[1]
        assert len(item.centres) == len(item.boxes) == len(item.label)
        lengths.add(len(item.label))
        pixels = np.asarray(item.image)
        assert pixels.std() > 10  # not blank
    assert lengths == set(range(scheme.length[0], scheme.length[1] + 1))


def test_preset_properties_for_the_trainer():
    strike = load_scheme("strike")
    assert strike.alphabet == "abcdefghijklmnopqrstuvwxyz0123456789"
    assert strike.length == (5, 6) and strike.size == (200, 50)
    assert (strike.width, strike.height) == strike.size
    assert load_scheme("rings").length == (6, 6)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(table: dict, prefix: str = "") -> str:
    """TOML text of a parsed scheme (tables, scalars, lists and inline tables)."""
    plain = {k: v for k, v in table.items() if not (isinstance(v, dict) and _is_section(v))}
    lines = [f"[{prefix}]"] if prefix and plain else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in plain.items()]
    for key, value in table.items():
        if key not in plain:
            lines.append(_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(lines) + "\n"


def _is_section(value: dict) -> bool:
    return not set(value) <= {"min", "max"}  # {min, max} colour ranges stay inline


def _leaves(table: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        keys += _leaves(value, dotted) if isinstance(value, dict) and _is_section(value) \
            else [dotted]
    return keys


def _with(table: dict, dotted: str, value) -> dict:
    copy = json.loads(json.dumps(table))
    *parents, last = dotted.split(".")
    node = copy
    for part in parents:
        node = node[part]
    node[last] = value
    return copy


FULL_TABLE = tomllib.loads(FULL)
EXAMPLES = {"full": FULL_TABLE, "rings": tomllib.loads(
    resources.files("captchalab.generators").joinpath("presets", "rings.toml").read_text())}
BAD_VALUES = ["text", -1, 10**9, 0.5, True, [], ["a", "b", "c"], {"x": 1}, [5, 1]]


def test_full_example_round_trips_through_the_writer():
    assert tomllib.loads(_toml(FULL_TABLE)) == FULL_TABLE
    assert len(_leaves(FULL_TABLE)) == 43  # every key of the full example


@pytest.mark.parametrize(("example", "key"), [(name, key) for name, table in EXAMPLES.items()
                                               for key in _leaves(table)])
def test_every_key_with_every_kind_of_bad_value_is_a_one_line_error_naming_it(example, key):
    """Each key of the full example and of the rings preset, set to values of every wrong
    type and range: the scheme accepts the value (some are valid) or refuses it in one line
    naming the file and the key."""
    refused = 0
    for value in BAD_VALUES:
        text = _toml(_with(EXAMPLES[example], key, value))
        try:
            parse_scheme(text, "bad.toml")
        except SchemeError as caught:
            message = str(caught)
            assert message.startswith("bad.toml: ") and "\n" not in message, message
            assert key.split(".")[-1] in message or key.rsplit(".", 1)[0] in message, \
                (key, value, message)
            refused += 1
    assert refused >= 3, key  # most wrong values are wrong for every key
