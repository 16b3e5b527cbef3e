"""Starting a model from another one's weights: rows remapped by symbol, clear errors."""

import shutil

import numpy as np
import pytest
import torch

from captchalab.data import Alphabet, Preprocessing, read_labelled_folder
from captchalab.models import DataShape, build, family_class
from captchalab.runtime.model_file import ModelCard, ModelFile, ModelFileError, load_model_file
from captchalab.runtime.torch_backend import state_to_numpy
from captchalab.training import TrainConfig, train
from captchalab.training.transfer import cases_drawn, glyph_case_rows, transfer_weights


def _model(family: str, alphabet: Alphabet, length: int = 3, height: int = 32, **options):
    shape = DataShape(alphabet.num_classes, height, 96, (length,), 96.0)
    torch.manual_seed(len(alphabet.symbols))
    return build(family, **family_class(family).configure(shape, **options))


def _source(model, alphabet: Alphabet) -> ModelFile:
    card = ModelCard(family=model.family, config=model.config, decoder=model.decoder,
                     alphabet=alphabet.symbols, preprocessing=Preprocessing(32, 96))
    return ModelFile(state_to_numpy(model), card)


@pytest.mark.parametrize("family", ["crnn", "multihead", "heatmap"])
def test_class_rows_follow_their_symbols_and_new_symbols_start_fresh(family):
    old, new = Alphabet("abc"), Alphabet("bcdx")
    source_model = _model(family, old)
    fresh = _model(family, new)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    moved = transfer_weights(fresh, _source(source_model, old), new)
    assert (moved.shared, moved.new) == ("bc", "dx")
    source_state, state = source_model.state_dict(), fresh.state_dict()
    for name, value in state.items():
        if not any(name.startswith(p + ".") for p in fresh.class_outputs):
            assert torch.equal(value, source_state[name]), name
            continue
        blocks = value.shape[0] // new.num_classes  # positions of a positional head
        ours = value.view(blocks, new.num_classes, *value.shape[1:])
        theirs = source_state[name].view(blocks, old.num_classes, *value.shape[1:])
        fresh_rows = before[name].view(blocks, new.num_classes, *value.shape[1:])
        assert torch.equal(ours[:, 0], theirs[:, 0])  # the blank's row
        for symbol in "bc":
            assert torch.equal(ours[:, new.encode(symbol)[0]], theirs[:, old.encode(symbol)[0]])
        for symbol in "dx":
            row = new.encode(symbol)[0]
            assert torch.equal(ours[:, row], fresh_rows[:, row])


def test_other_family_or_label_length_is_refused():
    alphabet = Alphabet("abc")
    crnn = _source(_model("crnn", alphabet), alphabet)
    with pytest.raises(ModelFileError, match="is a crnn model.*`model` crnn"):
        transfer_weights(_model("multihead", alphabet), crnn, alphabet, "x.safetensors")
    four = _source(_model("multihead", alphabet, length=4), alphabet)
    with pytest.raises(ModelFileError, match="length 4 vs 3"):
        transfer_weights(_model("multihead", alphabet, length=3), four, alphabet)


def test_a_taller_crnn_starts_from_a_32_pixel_one_with_its_rows_resampled():
    """32 px gives 2 feature rows, 64 px 4: the projection over channels x rows is resampled,
    so a feature map whose rows are alike projects as it did in the source."""
    alphabet = Alphabet("abc")
    source_model, tall = _model("crnn", alphabet), _model("crnn", alphabet, height=64)
    transfer_weights(tall, _source(source_model, alphabet), alphabet)
    channels = source_model.backbone.out_channels
    column = torch.randn(5, channels, 1)
    with torch.no_grad():
        before = source_model.project(column.expand(5, channels, 2).reshape(5, -1))
        after = tall.project(column.expand(5, channels, 4).reshape(5, -1))
    assert tall.project.weight.shape == (source_model.project.weight.shape[0], channels * 4)
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.equal(tall.classifier.weight, source_model.classifier.weight)
    source_rows = source_model.project.weight.view(-1, channels, 2)
    tall_rows = tall.project.weight.view(-1, channels, 4)
    assert torch.allclose(tall_rows[..., 0], source_rows[..., 0] / 2)  # the top row stays top
    assert torch.allclose(tall_rows[..., 3], source_rows[..., 1] / 2)


def test_a_crnn_with_column_context_starts_from_one_without_reading_as_it_does():
    """The context convolution a ``none`` source lacks starts at zero: the new model reads
    exactly what the source reads, and learns the context from there. An LSTM source is
    another network and is refused."""
    alphabet = Alphabet("abc")
    source_model = _model("crnn", alphabet, sequence="none")
    context = _model("crnn", alphabet, sequence="conv")
    transfer_weights(context, _source(source_model, alphabet), alphabet)
    assert torch.count_nonzero(context.context.weight) == 0
    source_model.eval(), context.eval()
    images = torch.rand(3, 1, 32, 96)
    assert torch.allclose(source_model(images), context(images))
    with pytest.raises(ModelFileError, match="sequence lstm vs conv"):
        transfer_weights(context, _source(_model("crnn", alphabet, sequence="lstm"), alphabet),
                         alphabet)
    with pytest.raises(ModelFileError, match="sequence conv vs none"):  # not the other way
        transfer_weights(source_model, _source(context, alphabet), alphabet)


def test_small_letters_drawn_as_capitals_start_from_the_capitals_rows():
    """A set that labels ``a`` where its images draw ``A`` (the swust sets): the row of ``a``
    comes from the source's ``A``, judged by what images holding the letter add."""
    classes = Alphabet("abAB")
    labels = ["ab", "a", "b", "x"]
    mass = torch.zeros(4, classes.num_classes)
    for image, label in enumerate(labels):
        if "a" in label:
            mass[image, classes.encode("A")[0]] += 3.0  # a capital where "a" is labelled
            mass[image, classes.encode("a")[0]] += 0.5
        if "b" in label:
            mass[image, classes.encode("b")[0]] += 2.0  # a small b, read as one
    mass[:, classes.encode("a")[0]] += 5.0  # alike in every image: not the letter's glyph
    assert cases_drawn(mass, labels, ["a", "b"], classes) == {"a": "A"}
    assert cases_drawn(mass, ["a"] * 4, ["a"], classes) == {}  # nothing to compare with
    source_model, small = _model("crnn", classes), _model("crnn", Alphabet("ab"))
    moved = transfer_weights(small, _source(source_model, classes), Alphabet("ab"),
                             rows_from={"a": "A"})
    assert (moved.shared, moved.from_other_case) == ("ab", "a")
    theirs = source_model.classifier.weight
    assert torch.equal(small.classifier.weight[1], theirs[classes.encode("A")[0]])
    assert torch.equal(small.classifier.weight[2], theirs[classes.encode("b")[0]])
    pixels = np.zeros((4, 32, 96), np.uint8)
    assert set(glyph_case_rows(small, _source(source_model, classes), Alphabet("ab"), pixels,
                               labels, Preprocessing(32, 96))) <= {"a", "b"}


def test_fine_tuning_a_trained_model_on_a_new_alphabet(trained_model, rings_train, tmp_path):
    """Rings with digit 8 renamed x: the model keeps its alphabet (8 included, though the new
    labels lack it), extended by x, and learns x."""
    data = tmp_path / "renamed"
    data.mkdir()
    for i, sample in enumerate(read_labelled_folder(rings_train).samples[:300]):
        shutil.copy(sample.path, data / f"{sample.label.replace('8', 'x')}_{i}.png")
    messages = []
    config = TrainConfig(epochs=3, init=str(trained_model), freeze_epochs=1, backbone_lr=0.3)
    result = train(data, tmp_path / "run", config, log=messages.append, show_progress=False)
    assert any("6 symbols carried over, 1 new (x)" in m for m in messages), messages
    tuned = load_model_file(result.model_path)
    source = load_model_file(trained_model)
    assert tuned.card.alphabet == "234568x"  # the live model's, then the new symbol
    assert tuned.card.preprocessing == source.card.preprocessing
    assert result.metrics["char_accuracy"] > 0.6  # chance is 1/6
    backbone = [k for k in tuned.tensors if k.startswith("backbone.") and "weight" in k]
    assert not all(np.array_equal(tuned.tensors[k], source.tensors[k]) for k in backbone)


@pytest.mark.slow
def test_fine_tuning_reads_several_folders_as_one(tmp_path, capsys):
    """The loop's fine-tune: the original set and newly labelled images, from the live
    model, with the short recipe, in which the new folder weighs as much as the original."""
    from captchalab.cli import main
    from captchalab.generators import generate
    from captchalab.runtime import read_card

    original = generate("rings", 60, tmp_path / "original", seed=7, workers=1)
    live = tmp_path / "live"
    assert main(["train", str(original), "--out", str(live), "--epochs", "1", "--quiet"]) == 0
    new = tmp_path / "new"
    new.mkdir()
    for i, sample in enumerate(read_labelled_folder(
            generate("rings", 20, tmp_path / "more", seed=8, workers=1)).samples):
        shutil.copy(sample.path, new / f"{sample.label.replace('2', 'z')}_{i}.png")
    out = tmp_path / "tuned"
    capsys.readouterr()
    assert main(["train", str(original), str(new), "--init", str(live / "model.safetensors"),
                 "--fine-tune", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "72 training and 8 validation images" in err and "1 new (z)" in err
    assert "each folder weighs the same: original x1, new x3" in err
    card, before = read_card(out / "model.safetensors"), read_card(live / "model.safetensors")
    assert card.alphabet == before.alphabet + "z" and card.data.train_count == 72
    # 54 original and 18 new images, the new ones three times: 108 a epoch, 4 steps
    assert card.training.config["fine_tune"] and card.training.steps_planned == 2 * 4
    assert (out / "model.safetensors").read_bytes() != (live / "model.safetensors").read_bytes()


def test_the_fine_tune_recipe_is_short():
    from captchalab.training.config import FINE_TUNE_STEPS
    from captchalab.training.trainer import planned_steps

    epochs, steps = planned_steps(TrainConfig(init="live.safetensors", fine_tune=True), 2000)
    assert abs(steps - FINE_TUNE_STEPS) <= 63 and epochs == round(FINE_TUNE_STEPS / 63)
    assert planned_steps(TrainConfig(), 2000)[1] >= 4 * steps  # the full recipe's
