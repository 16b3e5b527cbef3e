"""Any script: non-ASCII labels end to end (file names, labels.txt, the alphabet, training,
the model file, ONNX, the CLI's output, the service and the labelling queue), and the fonts
of other scripts, named by their Debian package when missing."""

from __future__ import annotations

import base64
import io
import json
import shutil

import pytest
from PIL import Image

from captchalab.cli import main
from captchalab.data import read_labelled_folder
from captchalab.generators import SchemeError, generate, parse_scheme
from captchalab.generators.fonts import font_path


def _has(name: str) -> bool:
    try:
        font_path(name)
    except FileNotFoundError:
        return False
    return True


def test_a_missing_font_of_another_script_names_its_debian_package(monkeypatch):
    from captchalab.generators import fonts

    monkeypatch.setattr(fonts, "_SYSTEM_FOLDERS", ())  # as on a machine without them
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-wqy-microhei"):
        font_path("wqy-microhei.ttc")
    text = 'size = [100, 40]\nalphabet = "ab"\nlength = 2\n[glyphs]\nfonts = ["wqy-microhei.ttc"]\n'
    with pytest.raises(SchemeError, match="install Debian's fonts-wqy-microhei"):
        parse_scheme(text)


def test_non_ascii_labels_come_from_file_names_and_label_files(tmp_path):
    for i, label in enumerate(["αβγ", "ДЖЯ", "éñü"]):
        Image.new("L", (40, 16), 255).save(tmp_path / f"{label}_{i}.png")
    (tmp_path / "other").mkdir()
    Image.new("L", (40, 16), 255).save(tmp_path / "other" / "a.png")
    (tmp_path / "other" / "labels.txt").write_text("a.png,汉字\n", encoding="utf-8")
    assert sorted(read_labelled_folder(tmp_path).labels) == ["éñü", "αβγ", "ДЖЯ"]
    folder = read_labelled_folder(tmp_path / "other")
    assert folder.labels == ["汉字"] and folder.alphabet.symbols == "字汉"


@pytest.mark.slow
@pytest.mark.skipif(not _has("wqy-microhei.ttc"), reason="needs Debian's fonts-wqy-microhei "
                    "(.ci/run installs it)")
def test_chinese_captchas_round_trip_through_training_onnx_cli_and_service(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from captchalab.export import export_onnx
    from captchalab.runtime import Recognizer
    from captchalab.service import ServedModel, create_app
    from captchalab.service.labelling import LabelQueue

    data = generate("hanzi", 120, tmp_path / "hanzi", seed=4, workers=1)
    labels = read_labelled_folder(data).labels
    assert all(len(label) == 4 and all("\u4e00" <= c <= "\u9fff" for c in label)
               for label in labels)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    model = out / "model.safetensors"
    source = Recognizer.load(model)
    assert set(source.alphabet.symbols) == set("".join(labels))
    onnx_path = export_onnx(model, tmp_path / "hanzi.onnx")
    exported = Recognizer.load(onnx_path)
    assert exported.alphabet == source.alphabet
    image = sorted(data.glob("*.png"))[0]
    expected = exported.predict(image)
    assert main(["predict", str(onnx_path), str(image), "--json"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["text"] == expected.text
    assert "\\u" not in printed  # UTF-8 text, not escapes
    buffer = io.BytesIO(image.read_bytes())
    with TestClient(create_app([ServedModel.load(onnx_path, "hanzi")])) as client:
        answer = client.post("/v1/recognize",
                             json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert answer.status_code == 200 and answer.json()["results"][0]["text"] == expected.text
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    shutil.copy(image, unlabelled / "x.png")
    queue = LabelQueue(exported, unlabelled, tmp_path / "labelled")
    saved = queue.save("x.png", "汉字中国")
    assert saved.name == "汉字中国.png"
    assert read_labelled_folder(saved.parent).labels == ["汉字中国"]
