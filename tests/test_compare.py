"""``compare``: every family on the same split, a table, and failures reported, not fatal."""

import csv
import json
import shutil

import pytest

from captchalab.cli import main


@pytest.mark.slow
def test_compare_trains_each_family_and_derives_centres_for_the_heatmap(rings_train, tmp_path,
                                                                         capsys):
    folder = tmp_path / "plain"  # string labels only: no annotations file
    folder.mkdir()
    images = sorted(rings_train.glob("*.png"))[:120]
    rows = []
    for i, path in enumerate(images):
        shutil.copy(path, folder / path.name)
        label = path.name.split("_")[0]
        rows.append([path.name, label[:5] if i % 10 == 0 else label])  # a few shorter labels
    with (folder / "labels.csv").open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    out = tmp_path / "cmp"
    code = main(["compare", str(folder), "--models", "heatmap,multihead,multilabel",
                 "--epochs", "2", "--out", str(out), "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    results = {r["model"]: r for r in json.loads((out / "compare.json").read_text())["results"]}
    assert list(results) == ["crnn", "heatmap", "multihead", "multilabel"]  # crnn added first
    assert "fixed number of characters" in results["multihead"]["error"]
    for name in ("crnn", "heatmap", "multilabel"):
        entry = results[name]
        assert entry["error"] is None
        assert 0.0 <= entry["accuracy"] <= 1.0 and entry["parameters"] > 0
        assert entry["file_bytes"] > 0 and entry["images_per_second"] > 0
        # epochs run, though a set this small is validated only every few epochs and at the
        # end: epoch 2 is its one validation, so the best epoch too
        assert entry["epochs"] == 2 and entry["best_epoch"] == 2
        assert 0.0 <= entry["last_accuracy"] <= 1.0
        history = [json.loads(line) for line in (out / name / "metrics.jsonl").open()]
        assert entry["last_accuracy"] == history[-1]["val_accuracy"]
        assert (out / name / "model.safetensors").is_file()
    assert results["multilabel"]["accuracy_kind"] == "exact set"
    assert "CTC alignment" in results["heatmap"]["note"]
    assert (out / "centres.jsonl").is_file() and not (folder / "annotations.jsonl").exists()
    assert "| multihead | failed |" in table and (out / "compare.png").stat().st_size > 0

    assert main(["compare", str(folder), "--out", str(out), "--models", "crnn"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_compare_rejects_unknown_families_before_training(rings_train, tmp_path, capsys):
    assert main(["compare", str(rings_train), "--models", "crnn,resnet",
                 "--out", str(tmp_path / "cmp")]) == 1
    assert "unknown model family 'resnet'" in capsys.readouterr().err
    assert not (tmp_path / "cmp" / "crnn").exists()
