"""Every odd or hostile image: a one-line error naming the file, or the right pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from captchalab.cli import main
from captchalab.data import Preprocessing, read_labelled_folder
from captchalab.data.preprocess import ImageError, ImageTooLarge, open_image

PRE = Preprocessing(height=32, width=96)


def _glyphs(mode: str = "L", size=(120, 40), background=255) -> Image.Image:
    grey = Image.new("L", size, background)
    ImageDraw.Draw(grey).rectangle((20, 10, 60, 30), fill=0)  # a dark block on paper
    return grey.convert(mode)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("odd")
    _glyphs().save(folder / "ok.png")
    _glyphs("RGB").save(folder / "ok.jpg", quality=95)
    (folder / "zero.png").write_bytes(b"")
    png = (folder / "ok.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    jpeg = (folder / "ok.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "text.png").write_text("not an image")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 M pixels in 48 KB
    Image.fromarray(np.asarray(_glyphs(), dtype=np.uint16) * 257).save(folder / "deep.png")
    _glyphs().convert("P").save(folder / "palette.png")
    clear = Image.new("RGBA", (120, 40), (0, 0, 0, 0))  # dark ink on a transparent ground
    ImageDraw.Draw(clear).rectangle((20, 10, 60, 30), fill=(0, 0, 0, 255))
    clear.save(folder / "transparent.png")
    _glyphs("RGB").convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; the viewer turns it 90 degrees clockwise
    _glyphs("RGB").rotate(90, expand=True).save(folder / "exif.jpg", exif=exif, quality=95)
    frames = [_glyphs(), _glyphs(background=128)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("L", (1, 1), 255).save(folder / "tiny.png")
    Image.new("L", (10000, 10), 255).save(folder / "long.png")
    return folder


@pytest.mark.parametrize("name, message", [
    ("zero.png", "empty file"),
    ("truncated.png", "corrupt or truncated image"),
    ("truncated.jpg", "corrupt or truncated image"),
    ("text.png", "not an image (PNG, JPEG, GIF, BMP or WebP)"),
])
def test_unreadable_files_get_a_short_reason(images, name, message):
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PRE.load(images / name)
    with pytest.raises(ImageError, match=message.split(" (")[0]):
        PRE.load((images / name).read_bytes())


def test_a_decompression_bomb_is_refused_before_decoding(images):
    with pytest.raises(ImageTooLarge):
        open_image(images / "bomb.png")
    with pytest.raises(ImageTooLarge, match="1000x1000 pixels, over the limit of 999999"):
        open_image(_png_bytes(1000, 1000), max_pixels=999_999)


def _png_bytes(width: int, height: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, reference, tolerance", [
    ("deep.png", "ok.png", 1.0),  # 16-bit: scaled to 8 bits, not clipped to white
    ("palette.png", "ok.png", 0.0),
    ("transparent.png", "ok.png", 0.0),  # dark ink laid on white, not black on black
    ("animated.gif", "ok.png", 0.0),  # the first frame
    ("cmyk.jpg", "ok.jpg", 6.0),
    ("exif.jpg", "ok.jpg", 6.0),  # turned upright by its EXIF orientation
])
def test_valid_odd_images_give_the_same_pixels(images, name, reference, tolerance):
    got = PRE.load(images / name).astype(float)
    want = PRE.load(images / reference).astype(float)
    assert np.abs(got - want).mean() <= tolerance
    assert want.min() < 60 and want.max() > 200  # the reference has ink and paper


@pytest.mark.parametrize("name", ["tiny.png", "long.png"])
def test_extreme_shapes_are_resized(images, name):
    pixels = PRE.load(images / name)
    assert pixels.shape == (32, 96) and pixels.min() == 255


def test_cli_predict_names_each_bad_file_and_reads_the_rest(images, trained_model, capsys):
    code = main(["predict", str(trained_model), str(images)])
    out, err = capsys.readouterr()
    assert code == 1
    read = {Path(line.split("\t")[0]).name for line in out.splitlines()}
    assert read == {"ok.png", "ok.jpg", "deep.png", "palette.png", "transparent.png",
                    "cmyk.jpg", "exif.jpg", "animated.gif", "tiny.png", "long.png"}
    errors = err.strip().splitlines()
    assert len(errors) == 5 and "Traceback" not in err
    named = {Path(line.split(": ")[2]).name for line in errors}
    assert named == {"zero.png", "truncated.png", "truncated.jpg", "text.png", "bomb.png"}


def test_labelled_folder_reports_bad_images_with_reasons(images):
    folder = read_labelled_folder(images)
    reasons = {bad.path.name: bad.problem for bad in folder.bad}
    assert reasons["zero.png"] == "empty file"
    assert reasons["text.png"] == "not an image (PNG, JPEG, GIF, BMP or WebP)"
    assert reasons["bomb.png"].startswith("declared size over")
    assert "deep.png" not in reasons and "exif.jpg" not in reasons
    sizes = {s.path.name: s.size for s in folder.samples}
    assert sizes["exif.jpg"] == (120, 40)  # upright size, as training will see it
