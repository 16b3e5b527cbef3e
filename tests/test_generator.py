import io
import json

import numpy as np
import pytest
from PIL import Image

from captchalab.cli import main
from captchalab.data import read_labelled_folder
from captchalab.generators import ANNOTATIONS_FILE, generate, load_scheme, parse_scheme, render
from captchalab.generators.png import encode_png

# white paper, black glyphs well apart, both warps, no noise: every dark pixel is a glyph's
CLEAN = """
size = [220, 64]
mode = "L"
alphabet = "abcdefghkmnopqrstuvwxyz2345678"
length = [4, 6]
[glyphs]
fonts = ["DejaVuSans.ttf", "DejaVuSerif-Bold.ttf"]
size = [24, 30]
rotation = 25
shear = 0.2
spacing = [7, 10]
jitter = 6
[warp.sine]
amplitude = [2, 4]
period = [50, 90]
[warp.elastic]
strength = 1.5
scale = 16
"""


def test_rings_matches_the_described_scheme():
    scheme = load_scheme("rings")
    item = render("rings", seed=3, index=0)
    pixels = np.asarray(item.image)
    assert item.image.mode == "L" and item.image.size == (310, 80)
    assert item.label == "842238"  # the random stream of the original rings generator
    assert len(item.label) == 6 and set(item.label) <= set("234568") == set(scheme.alphabet)
    assert (pixels[0, :] == 0).all() and (pixels[:, 0] == 0).all()  # 1-px black border
    assert (pixels[:, -1] == 0).all() and (pixels[-1, :] == 0).all()
    assert np.median(pixels) == 221  # grey background
    assert scheme.rings.positions == (17, 57, 115, 170, 217, 260)
    for (cx, cy), x in zip(item.centres, scheme.rings.positions):
        assert x < cx < x + 40 and 14 < cy < 80


@pytest.mark.parametrize("name", ["rings", "classic", "strike"])
def test_reproducible_with_a_seed_and_different_across_seeds(name):
    a = render(name, seed=5, index=7)
    b = render(name, seed=5, index=7)
    c = render(name, seed=6, index=7)
    d = render(name, seed=5, index=8)
    assert a.label == b.label and a.centres == b.centres and a.boxes == b.boxes
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(d.image))


def test_generate_writes_labelled_files_and_annotations(tmp_path):
    out = generate("rings", 12, tmp_path, seed=1)
    folder = read_labelled_folder(out)
    assert len(folder.samples) == 12 and not folder.bad
    lines = [json.loads(line) for line in (out / ANNOTATIONS_FILE).read_text().splitlines()]
    assert len(lines) == 12
    for line in lines:
        assert line["file"].startswith(line["label"] + "_")
        assert (out / line["file"]).is_file()
        assert len(line["centres"]) == len(line["boxes"]) == 6
        for (cx, cy), (x0, y0, x1, y1) in zip(line["centres"], line["boxes"]):
            assert x0 <= cx <= x1 and y0 <= cy <= y1
    assert not list(out.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("mode, shape", [("L", (37, 53)), ("RGB", (50, 200)), ("RGB", (1, 1))])
def test_png_encoder_round_trips_through_pillow(mode, shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape + ((3,) if mode == "RGB" else ()),
                                               dtype=np.uint8)
    back = Image.open(io.BytesIO(encode_png(Image.fromarray(pixels))))
    assert back.mode == mode and np.array_equal(np.asarray(back), pixels)


def test_two_workers_write_the_same_bytes_as_one(tmp_path):
    ticks = []
    one = generate("classic", 40, tmp_path / "one", seed=4, advance=lambda: ticks.append(1))
    two = generate("classic", 40, tmp_path / "two", seed=4, workers=2)
    assert len(ticks) == 40
    names = sorted(p.name for p in one.iterdir())
    assert len(names) == 41 and names == sorted(p.name for p in two.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


@pytest.mark.parametrize("warp, slack, off", [("none", 2, 1.0), ("sine", 3, 1.5),
                                               ("both", 4, 1.5)])
def test_boxes_and_centres_follow_the_drawn_glyphs(warp, slack, off):
    """Every dark pixel lies in a box, each box holds its glyph snugly, and each centre sits
    in the middle of its glyph's ink; with rotation and shear, then no warp, a sine, or a sine
    and an elastic warp. Boxes that ignore the warp, or lie 2 px off, fail this."""
    text = {"none": CLEAN.split("[warp.sine]")[0], "sine": CLEAN.split("[warp.elastic]")[0],
            "both": CLEAN}[warp]
    scheme = parse_scheme(text, "clean.toml")
    assert scheme.warp.active == (warp != "none")
    assert (scheme.warp.elastic.strength[1] > 0) == (warp == "both")
    covered = total = 0
    gaps = []
    for index in range(30):
        item = render(scheme, seed=0, index=index)
        ink = np.asarray(item.image) < 128
        inside = np.zeros_like(ink)
        for (x0, y0, x1, y1), (cx, cy) in zip(item.boxes, item.centres):
            inside[y0:y1, x0:x1] = True
            ys, xs = np.nonzero(ink[y0:y1, x0:x1])
            assert len(xs) > 0.1 * (x1 - x0) * (y1 - y0)  # the box holds a glyph
            gaps += [xs.min(), ys.min(), x1 - x0 - 1 - xs.max(), y1 - y0 - 1 - ys.max()]
            assert abs(cx - x0 - (xs.min() + xs.max() + 1) / 2) <= off
            assert abs(cy - y0 - (ys.min() + ys.max() + 1) / 2) <= off
        covered += int((ink & inside).sum())
        total += int(ink.sum())
    assert covered >= 0.995 * total
    assert max(gaps) <= slack and np.mean(gaps) <= 3


@pytest.mark.parametrize("name", ["classic", "strike"])
def test_preset_centres_sit_on_ink_despite_the_noise(name):
    """Around the annotated centres (and in the boxes) pixels differ from the background far
    more than outside the boxes, noise included; boxes 12 px off fail this."""
    near_centres, in_boxes, outside = [], [], []
    for index in range(20):
        item = render(name, seed=9, index=index)
        pixels = np.asarray(item.image, np.float32).reshape(item.image.height,
                                                            item.image.width, -1)
        mask = np.zeros(pixels.shape[:2], bool)
        for x0, y0, x1, y1 in item.boxes:
            mask[y0:y1, x0:x1] = True
        background = np.median(pixels[~mask], axis=0)
        difference = np.abs(pixels - background).sum(-1)
        outside.append(difference[~mask].mean())
        in_boxes.append(difference[mask].mean())
        for cx, cy in item.centres:
            x, y = round(cx), round(cy)
            near_centres.append(difference[max(0, y - 4):y + 5, max(0, x - 4):x + 5].mean())
    # about 9 and 11 times as seen; boxes and centres 12 px off give about 5
    assert np.mean(in_boxes) > 6.5 * np.mean(outside)
    assert np.mean(near_centres) > 7 * np.mean(outside)


def test_generate_command_with_a_scheme_file(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(CLEAN)
    assert main(["generate", str(path), "--count", "5", "--out", str(tmp_path / "out"),
                 "--workers", "1", "--quiet"]) == 0
    assert "wrote 5 mine captchas" in capsys.readouterr().out
    assert len(read_labelled_folder(tmp_path / "out").samples) == 5


def test_generate_command_with_a_bad_scheme_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(CLEAN.replace("rotation = 25", "rotation = 400"))
    out = tmp_path / "out"
    assert main(["generate", str(path), "--count", "5", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"captchalab: error: {path}: glyphs.rotation must be between 0 and 180 "
                   "degrees, got 400")
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_:  # refused by the argument parser, before any work
        main(["generate", "rings", "--count", "0", "--out", str(out), "--quiet"])
    assert exit_.value.code == 2
    assert "argument --count: expected a whole number of at least 1" in capsys.readouterr().err
