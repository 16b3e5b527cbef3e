"""Every model family: learns on generated rings captchas, round-trips through its model file,
and refuses wrong use with a clear error."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RINGS_SLICES, plan
from PIL import Image

from captchalab.cli import main
from captchalab.data import DatasetError
from captchalab.evaluation import evaluate
from captchalab.models import DataShape, Targets, build, family_class, list_families
from captchalab.models.heatmap import centre_maps
from captchalab.runtime import Recognizer, UnorderedReadingError
from captchalab.training import TrainConfig, train


@pytest.mark.slow
@pytest.mark.parametrize("name", list_families())
def test_family_learns_far_above_chance(name, family_model, rings_test):
    recognizer = Recognizer.load(family_model(name))
    assert recognizer.family == name
    metrics = evaluate(recognizer, rings_test, show_progress=False).metrics
    assert metrics[recognizer.reading.char_metric] >= plan(name).bar, metrics


@pytest.mark.slow
def test_heatmap_learns_from_centres_derived_by_the_crnn(family_model, rings_test):
    recognizer = Recognizer.load(family_model("heatmap"))
    metrics = evaluate(recognizer, rings_test, show_progress=False).metrics
    assert metrics["sequence_accuracy"] >= 0.7, metrics
    assert 0.05 <= recognizer.decoding.threshold <= 0.95  # tuned on the validation split


@pytest.mark.slow
@pytest.mark.parametrize("name", list_families())
def test_model_file_round_trips_through_load_and_predict(name, family_model, rings_test):
    path = family_model(name)
    image = sorted(rings_test.glob("*.png"))[0]
    first, second = Recognizer.load(path), Recognizer.load(path)
    a, b = first.predict(image), second.predict(image.read_bytes())
    assert a == b
    assert 0.0 <= a.confidence <= 1.0 and len(a.char_confidences) == len(a.characters)
    if not first.ordered:
        assert list(a.characters) == sorted(set(a.characters))
        with pytest.raises(UnorderedReadingError, match="which characters are present"):
            _ = a.text
    else:
        assert len(a.text) == 6


@pytest.mark.slow
def test_multilabel_predict_prints_the_set_and_says_order_is_unknown(family_model, rings_test,
                                                                       capsys):
    image = sorted(rings_test.glob("*.png"))[0]
    assert main(["predict", str(family_model("multilabel")), str(image)]) == 0
    captured = capsys.readouterr()
    assert "not their order" in captured.err
    name, present, confidence = captured.out.strip().split("\t")
    assert present.startswith("{") and ":" in present and 0 <= float(confidence) <= 1
    assert main(["predict", str(family_model("multilabel")), str(image), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["order"] == "unknown" and "text" not in row
    assert all(0.0 <= p <= 1.0 for p in row["characters"].values())


@pytest.mark.slow
def test_decoder_options_that_do_not_fit_the_family_are_refused(family_model, rings_test,
                                                               capsys):
    model = str(family_model("multilabel"))
    assert main(["evaluate", model, str(rings_test), "--decoder", "greedy"]) == 1
    assert "apply to CTC models" in capsys.readouterr().err


def _mixed_length_folder(folder: Path) -> Path:
    folder.mkdir()
    for i, label in enumerate(["ab", "abc", "ba", "cab", "abba", "ca"]):
        Image.new("L", (60, 20), 255).save(folder / f"{label}_{i}.png")
    return folder


@pytest.mark.parametrize("name", ["multihead", "multihead-spatial", "slice"])
def test_fixed_length_families_refuse_mixed_lengths(name, tmp_path):
    folder = _mixed_length_folder(tmp_path / "mixed")
    with pytest.raises(ValueError, match="fixed number of characters.*lengths 2, 3, 4"):
        train(folder, tmp_path / "run", TrainConfig(model=name, epochs=1, val_split=0.0),
              log=lambda _: None, show_progress=False)


def test_cli_error_for_mixed_lengths_is_one_line(tmp_path, capsys):
    folder = _mixed_length_folder(tmp_path / "mixed")
    assert main(["train", str(folder), "--out", str(tmp_path / "run"), "--model", "multihead",
                 "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model crnn" in err and "`" not in err


@pytest.mark.parametrize("slices, message", [
    ([54, 110], "needs 5 boundaries"),
    ([54, 110, 100, 215, 262], "must increase"),
    ([54, 110, 170, 215, 400], "must increase within the image width"),
])
def test_bad_slice_boundaries_are_refused(slices, message):
    shape = DataShape(7, 32, 124, (6,), 310.0)
    with pytest.raises(ValueError, match=message):
        family_class("slice").configure(shape, slices=slices)


def test_slice_boundaries_become_fractions_of_the_width():
    config = family_class("slice").configure(DataShape(7, 32, 124, (6,), 310.0),
                                             slices=RINGS_SLICES)
    assert config["slices"] == pytest.approx([b / 310 for b in RINGS_SLICES], abs=1e-4)
    model = build("slice", **config)
    assert [end - start for start, end in model.spans] == [22, 22, 24, 18, 19, 19]
    assert model(torch.zeros(2, 1, 32, 124)).shape == (2, 6, 7)


@pytest.mark.parametrize("width, length", [(128, 5), (200, 5), (124, 6), (256, 8), (64, 4)])
def test_multihead_bodies_pool_two_columns_or_keep_one_per_character(width, length):
    images = torch.zeros(2, 1, 32, width)
    pooled = build("multihead", num_classes=7, height=32, width=width, length=length)
    spatial = build("multihead-spatial", num_classes=7, height=32, width=width, length=length)
    assert pooled.context(pooled.backbone(images)).shape[-2:] == (1, 2)
    columns = spatial.context(spatial.backbone(images)).shape[-1]
    assert length <= columns < 2 * length  # one more halving would leave too few
    for model in (pooled, spatial):
        assert model(images).shape == (2, length, 7)
    assert spatial.head[1].in_features == spatial.features(images).shape[1]


def test_heatmap_without_centres_says_how_to_get_them(rings_train, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(rings_train, folder, ignore=shutil.ignore_patterns("*.jsonl"))
    with pytest.raises(DatasetError, match="annotate-centres"):
        train(folder, tmp_path / "run", TrainConfig(model="heatmap", epochs=1),
              log=lambda _: None, show_progress=False)


def test_centre_maps_peak_at_one_on_each_character():
    targets = Targets(labels=torch.tensor([[2, 1, 0]]), lengths=torch.tensor([2]),
                      centres=torch.tensor([[[10.0, 17.0], [41.0, 5.0], [0.0, 0.0]]]))
    maps = centre_maps(targets, num_classes=3, rows=8, columns=16)
    assert maps.shape == (1, 3, 8, 16)
    assert maps[0, 2, 4, 2] == 1.0 and maps[0, 1, 1, 10] == 1.0
    assert maps[0, 0].max() == 0.0  # padding and the blank slot get no spot
    assert int((maps == 1.0).sum()) == 2
    assert 0.0 < maps[0, 2, 4, 3] < 1.0  # the Gaussian slope around a centre


@pytest.mark.slow
def test_derived_centres_sit_on_their_own_characters(derived_centres, rings_train):
    truth = {json.loads(line)["file"]: json.loads(line)["centres"]
             for line in (rings_train / "annotations.jsonl").read_text().splitlines()}
    nearest_is_own, total = 0, 0
    for line in derived_centres.read_text().splitlines():
        row = json.loads(line)
        true_x = np.array([x for x, _ in truth[row["file"]]])
        for index, (x, _) in enumerate(row["centres"]):
            nearest_is_own += int(np.argmin(np.abs(true_x - x)) == index)
            total += 1
    assert total == 600 * 6
    assert nearest_is_own / total >= 0.9


@pytest.mark.slow
def test_annotate_centres_needs_a_ctc_model_and_keeps_existing_files(family_model, rings_train,
                                                                     trained_model, capsys):
    assert main(["annotate-centres", str(family_model("slice")), str(rings_train)]) == 1
    assert "needs a CTC model" in capsys.readouterr().err
    assert main(["annotate-centres", str(trained_model), str(rings_train)]) == 1
    assert "--overwrite" in capsys.readouterr().err  # the generator's annotations stay


def test_a_width_multiplier_widens_every_family():
    from captchalab.models import list_families

    shape = DataShape(7, 32, 124, (6,), 310.0)
    for name in list_families():
        base = build(name, **family_class(name).configure(shape))
        wide = build(name, **family_class(name).configure(shape, width_multiplier=1.5))
        assert wide.config["widths"] == [24, 48, 96, 192]
        assert sum(p.numel() for p in wide.parameters()) > sum(
            p.numel() for p in base.parameters())
        assert wide(torch.zeros(2, 1, 32, 124)).shape == base(torch.zeros(2, 1, 32, 124)).shape


def test_a_crnn_without_its_lstm_reads_each_column_on_its_own():
    shape = DataShape(7, 32, 124, (6,), 310.0)
    plain = build("crnn", **family_class("crnn").configure(shape, sequence="none"))
    lstm = build("crnn", **family_class("crnn").configure(shape, sequence="lstm"))
    assert plain.rnn is None and plain.config["sequence"] == "none"
    assert not any(name.startswith("rnn.") for name in plain.state_dict())
    assert plain(torch.zeros(2, 1, 32, 124)).shape == lstm(torch.zeros(2, 1, 32, 124)).shape
    # one column's reading does not depend on columns beyond its receptive field
    plain.eval()
    image = torch.rand(1, 1, 32, 124)
    changed = image.clone()
    changed[..., 100:] = 0.0
    assert torch.allclose(plain(image)[0, :5], plain(changed)[0, :5])
    with pytest.raises(ValueError, match="expected one of lstm, none"):
        family_class("crnn").options[0].parse("gru")


def test_a_full_labelled_set_gets_column_context_and_a_few_labels_or_a_stream_do_not():
    from captchalab.models.crnn import CRNN

    crnn = family_class("crnn")
    full = DataShape(7, 32, 124, (6,), 310.0, labelled_images=CRNN.CONTEXT_IMAGES)
    assert crnn.configure(full)["sequence"] == "conv"
    assert crnn.configure(replace(full, labelled_images=CRNN.CONTEXT_IMAGES - 1)
                          )["sequence"] == "none"
    assert crnn.configure(replace(full, labelled_images=0))["sequence"] == "none"  # a stream
    assert crnn.configure(replace(full, expressions=True))["sequence"] == "lstm"
    assert crnn.configure(full, sequence="none")["sequence"] == "none"  # given: kept


def test_a_crnn_with_column_context_reads_its_neighbour_columns_and_no_further():
    torch.manual_seed(0)
    shape = DataShape(7, 32, 124, (6,), 310.0)
    model = build("crnn", **family_class("crnn").configure(shape, sequence="conv"))
    assert model.config["sequence"] == "conv" and model.rnn is None
    torch.nn.init.normal_(model.context.weight, std=0.1)  # as if trained
    plain = build("crnn", **family_class("crnn").configure(shape, sequence="none"))

    def seen(network) -> torch.Tensor:
        """The input columns (pixels) that move column 5's scores."""
        network.eval()
        image = torch.rand(1, 1, 32, 124, requires_grad=True)
        network(image)[0, 5].sum().backward()
        return torch.nonzero(image.grad.abs().sum(dim=(0, 1, 2))).flatten()

    wide, narrow = seen(model), seen(plain)
    assert wide.max() >= narrow.max() + 8 and wide.min() <= max(0, narrow.min() - 8)
    assert wide.max() < 100  # no further than the context's columns


def test_a_model_file_from_before_an_option_existed_keeps_its_architecture(tmp_path,
                                                                            monkeypatch):
    """A crnn card without ``sequence`` (written before it existed) rebuilds with its LSTM,
    and fine-tuning it keeps the LSTM even where new models default to none."""
    from captchalab.models import completed_config
    from captchalab.models.crnn import CRNN
    from captchalab.runtime.model_file import ModelCard, load_model_file, save_model_file
    from captchalab.runtime.torch_backend import state_to_numpy

    for i in range(12):
        Image.new("RGB", (60, 20), (255, 255, 255)).save(tmp_path / f"ab{i}.png")
    model = build("crnn", **family_class("crnn").configure(DataShape(3, 32, 96, (2,), 60.0),
                                                           sequence="lstm"))
    old = {k: v for k, v in model.config.items() if k != "sequence"}
    assert completed_config("crnn", old)["sequence"] == "lstm"
    from captchalab.data import Preprocessing

    card = ModelCard(family="crnn", config=old, decoder="ctc", alphabet="ab",
                     preprocessing=Preprocessing(32, 96))
    source = save_model_file(tmp_path / "old.safetensors", state_to_numpy(model), card)
    monkeypatch.setattr(CRNN, "DEFAULT_SEQUENCE", "none")
    result = train(tmp_path, tmp_path / "tuned", TrainConfig(epochs=1, init=str(source)),
                   log=lambda _: None, show_progress=False)
    tuned = load_model_file(result.model_path)
    assert tuned.card.config["sequence"] == "lstm"
    assert any(k.startswith("rnn.") for k in tuned.tensors)
