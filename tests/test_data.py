from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captchalab.data import (
    Alphabet,
    DatasetError,
    Preprocessing,
    balance_folders,
    label_from_filename,
    read_labelled_folder,
    split_samples,
)
from captchalab.data.preprocess import (
    DEFAULT_HEIGHT,
    MAX_FITTED_HEIGHT,
    MIN_GLYPH_WIDTH,
    MIN_GLYPH_WIDTH_BOTH_CASES,
    both_cases,
    fitted_height,
    to_grey,
)


def _image(path: Path, size=(60, 20), colour=(200, 30, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "label"),
    [("226md.png", "226md"), ("226md_3.png", "226md"), ("ab_12.jpeg", "ab"),
     ("a_b.png", "a_b"), ("x_1_2.gif", "x_1"), ("2024.bmp", "2024")],
)
def test_label_from_filename(name, label):
    assert label_from_filename(name) == label


def test_alphabet_inferred_sorted_and_encoding_round_trips():
    alphabet = Alphabet.from_labels(["cab", "bd"])
    assert alphabet.symbols == "abcd"
    assert alphabet.num_classes == 5
    assert alphabet.encode("dab") == [4, 1, 2]
    assert alphabet.decode([4, 0, 1, 2]) == "dab"
    with pytest.raises(ValueError, match="outside the alphabet"):
        alphabet.encode("abz")
    with pytest.raises(ValueError, match="repeats"):
        Alphabet("aab")


def test_folder_labels_from_names_and_case_folding(tmp_path):
    for name in ("AbC.png", "abd_2.jpg", "xyz.webp", "notes.txt"):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            _image(tmp_path / name)
    folder = read_labelled_folder(tmp_path)
    assert sorted(folder.labels) == ["AbC", "abd", "xyz"]
    assert folder.alphabet.symbols == "ACabdxyz"
    folded = read_labelled_folder(tmp_path, case_insensitive=True)
    assert sorted(folded.labels) == ["abc", "abd", "xyz"]
    assert folded.alphabet.symbols == "abcdxyz"


def test_folder_labels_from_csv_file(tmp_path):
    _image(tmp_path / "0001.png")
    _image(tmp_path / "0002.png")
    (tmp_path / "labels.csv").write_text("filename,label\n0001.png,k3x\n0002.png,77a\n")
    folder = read_labelled_folder(tmp_path)
    assert {s.path.name: s.label for s in folder.samples} == {"0001.png": "k3x", "0002.png": "77a"}


def test_bad_files_named_in_one_message_and_skippable(tmp_path):
    _image(tmp_path / "good1.png")
    _image(tmp_path / "good2.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    _image(tmp_path / "bad!.png")
    folder = read_labelled_folder(tmp_path, alphabet="abcdegmnlo0123456789")
    assert len(folder.samples) == 2
    with pytest.raises(DatasetError) as raised:
        folder.raise_if_bad()
    message = str(raised.value)
    assert "\n" not in message
    for name in ("empty.png", "broken.jpg", "bad!.png", "`skip_bad`"):
        assert name in message
    folder.raise_if_bad(skip_bad=True)  # no error when skipping


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        read_labelled_folder(tmp_path / "nowhere")


def test_split_is_deterministic_and_independent_of_order(tmp_path):
    for i in range(50):
        _image(tmp_path / f"{i:03d}ab.png", size=(30, 10))
    samples = read_labelled_folder(tmp_path).samples
    train_a, val_a = split_samples(samples, 0.1, seed=0)
    train_b, val_b = split_samples(list(reversed(samples)), 0.1, seed=0)
    assert [s.path for s in val_a] == [s.path for s in val_b]
    assert len(val_a) == 5 and len(train_a) == 45
    assert not {s.path for s in train_a} & {s.path for s in val_a}
    _, val_other = split_samples(samples, 0.1, seed=1)
    assert [s.path for s in val_other] != [s.path for s in val_a]


def test_balanced_folders_weigh_the_same(tmp_path):
    """30 original images beside 4 new labels: the new ones repeat 8 times (30 / 4, rounded),
    each image of a folder as often as the others."""
    original, new = tmp_path / "original", tmp_path / "new"
    for folder, count in ((original, 30), (new, 4)):
        folder.mkdir()
        for i in range(count):
            _image(folder / f"{i:03d}{folder.name[0]}.png", size=(30, 10))
    samples = [s for f in (original, new) for s in read_labelled_folder(f).samples]
    balanced, repeats = balance_folders(samples, [original, new])
    assert repeats == [1, 8] and len(balanced) == 30 + 4 * 8
    counts = {}
    for sample in balanced:
        counts[sample.path] = counts.get(sample.path, 0) + 1
    assert {counts[s.path] for s in samples if s.path.parent == new} == {8}
    assert {counts[s.path] for s in samples if s.path.parent == original} == {1}
    assert balance_folders(samples, [original])[1] == [1]  # one folder: unchanged


def test_preprocessing_same_array_from_every_input_kind(tmp_path):
    path = tmp_path / "x.png"
    rgba = np.zeros((20, 60, 4), dtype=np.uint8)
    rgba[:, :30] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    Image.fromarray(rgba).save(path)
    pre = Preprocessing(height=16, width=48)
    from_path = pre.load(path)
    assert from_path.shape == (16, 48) and from_path.dtype == np.uint8
    assert np.array_equal(from_path, pre.load(path.read_bytes()))
    assert np.array_equal(from_path, pre.load(Image.open(path)))
    assert np.array_equal(from_path, pre.load(rgba))
    # transparent pixels become the white background, red becomes its grey level
    assert from_path[8, 40] == 255 and from_path[8, 5] == 76
    batch = pre([path, path])
    assert batch.shape == (2, 1, 16, 48) and batch.dtype == np.float32
    assert np.allclose(batch[0, 0, 8, 40], (1.0 - pre.mean) / pre.std)


@pytest.mark.parametrize("grey", ["luma", "darkest"])
def test_an_opaque_image_reads_as_its_composite_over_the_background(grey):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (20, 60, 3), dtype=np.uint8)
    opaque = np.dstack([colour, np.full((20, 60), 255, np.uint8)])
    for image in (Image.fromarray(opaque), Image.fromarray(opaque).convert("LA"),
                  Image.fromarray(colour).quantize(64).convert("PA")):
        composite = Image.alpha_composite(Image.new("RGBA", image.size, (255,) * 4),
                                          image.convert("RGBA"))
        assert np.array_equal(np.asarray(to_grey(image, mode=grey)),
                              np.asarray(to_grey(composite.convert("RGB"), mode=grey)))
    half = opaque.copy()
    half[:, 30:, 3] = 0  # a transparent half still shows the background
    assert (np.asarray(to_grey(Image.fromarray(half), background=7))[:, 30:] == 7).all()


def test_preprocessing_fit_keeps_aspect_and_round_trips():
    pre = Preprocessing.fit([(200, 50), (200, 50), (190, 50)], height=32)
    assert pre.height == 32 and pre.width == 128
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_the_fitted_height_keeps_narrow_glyphs_wide_enough_and_never_upscales():
    # 5 characters on 200x50: 25 px each at height 32, enough: the default height
    assert fitted_height([(200, 50)], [5]) == DEFAULT_HEIGHT
    # 4 to 6 characters on 160x56: 18 px each at 32; 44 keeps 25 px, a multiple of 4
    height = fitted_height([(160, 56)] * 3, [4, 5, 6])
    assert height == 44 and height % 4 == 0
    assert 160 * height / 56 / 5 >= MIN_GLYPH_WIDTH > 160 * (height - 4) / 56 / 5
    # never above the images' own height (56 of 58, the multiple of 4 below) ...
    assert fitted_height([(160, 58)], [12]) == 56
    # ... nor the cap; and small images stay at the default height (as before)
    assert fitted_height([(400, 200)], [30]) == MAX_FITTED_HEIGHT
    assert fitted_height([(60, 20)], [8]) == DEFAULT_HEIGHT
    assert Preprocessing.fit([(160, 56)], None, [4, 5, 6]).height == 44
    assert Preprocessing.fit([(160, 56)], 32, [4, 5, 6]).height == 32  # a given height wins


def test_case_sensitive_labels_keep_more_width_per_character():
    assert both_cases("aB0O") is False and both_cases("a0oO") is True
    assert both_cases("0123456789+-×÷=?") is False and both_cases("中文") is False
    # hard62's canvas (160x56, 4 to 6 characters): 44 without case, its own 56 with it
    assert fitted_height([(160, 56)], [4, 5, 6], case_sensitive=True) == 56
    assert 160 * 52 / 56 / 5 < MIN_GLYPH_WIDTH_BOTH_CASES <= 160 * 56 / 56 / 5
    # sysu's 90x32 stays at its own height: never upscaled for case either
    assert fitted_height([(90, 32)], [4], case_sensitive=True) == DEFAULT_HEIGHT
    # captcha_v2's canvas without case keeps the default height and its reading speed
    assert fitted_height([(200, 50)], [5], case_sensitive=False) == DEFAULT_HEIGHT
    assert Preprocessing.fit([(160, 56)], None, [5], case_sensitive=True).height == 56


def _labelled(tmp_path, names):
    for name in names:
        Image.new("L", (60, 20), 255).save(tmp_path / name)


def test_label_files_with_bom_crlf_unicode_and_repeats(tmp_path):
    _labelled(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "labels.csv").write_bytes(
        "\ufefffilename,label\r\na.png,k3x\r\nb.png,ü字7\r\na.png,k3x\r\nc.png,\r\n"
        .encode("utf-8"))
    folder = read_labelled_folder(tmp_path)
    assert {s.path.name: s.label for s in folder.samples} == {"a.png": "k3x", "b.png": "ü字7"}
    assert [(b.path.name, b.problem) for b in folder.bad] == [("c.png", "empty label")]


def test_conflicting_or_undecodable_label_files_are_named(tmp_path):
    _labelled(tmp_path, ["a.png"])
    (tmp_path / "labels.csv").write_text("a.png,abc\na.png,abd\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: line 2 labels a\.png 'abd', but "
                                           r"line 1 labels it 'abc'"):
        read_labelled_folder(tmp_path)
    (tmp_path / "labels.csv").write_bytes("a.png,\xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"labels\.csv: not UTF-8 text"):
        read_labelled_folder(tmp_path)


def test_training_fits_the_height_to_the_case_of_the_labels():
    from captchalab.training import TrainConfig
    from captchalab.training.data import fitted_preprocessing

    sizes, lengths = [(160, 56)] * 2, [5, 5]
    assert fitted_preprocessing(sizes, lengths, "abc0", TrainConfig()).height == 44
    assert fitted_preprocessing(sizes, lengths, "abcA0a", TrainConfig()).height == 56
    assert fitted_preprocessing(sizes, lengths, "aA", TrainConfig(height=32)).height == 32
