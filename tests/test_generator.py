import json

import numpy as np

from captchalab.data import read_labelled_folder
from captchalab.generators import ANNOTATIONS_FILE, generate, render
from captchalab.generators.rings import DIGIT_X, DIGITS


def test_rings_matches_the_described_scheme():
    item = render("rings", seed=3, index=0)
    pixels = np.asarray(item.image)
    assert item.image.mode == "L" and item.image.size == (310, 80)
    assert len(item.label) == 6 and set(item.label) <= set(DIGITS)
    assert (pixels[0, :] == 0).all() and (pixels[:, 0] == 0).all()  # 1-px black border
    assert (pixels[:, -1] == 0).all() and (pixels[-1, :] == 0).all()
    assert np.median(pixels) == 221  # grey background
    for (cx, cy), x in zip(item.centres, DIGIT_X):
        assert x < cx < x + 40 and 14 < cy < 80


def test_rings_is_reproducible_with_a_seed_and_varies_without(tmp_path):
    a = render("rings", seed=5, index=7)
    b = render("rings", seed=5, index=7)
    c = render("rings", seed=6, index=7)
    assert a.label == b.label and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


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
