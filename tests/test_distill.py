"""Distillation: the student reads like its teacher, learns its soft outputs, clear errors."""

import numpy as np
import pytest
import torch

from captchalab.cli import main
from captchalab.data import Alphabet, Preprocessing
from captchalab.generators import generate
from captchalab.models import DataShape, build, family_class
from captchalab.runtime import read_card
from captchalab.runtime.model_file import ModelCard, ModelFile, load_model_file
from captchalab.runtime.torch_backend import state_to_numpy
from captchalab.training import ConfigError, TrainConfig, distill, train
from captchalab.training.distillation import check_student, distillation_loss, load_teacher


def test_the_loss_is_zero_for_the_teachers_own_outputs_and_teaches_only_the_student():
    torch.manual_seed(0)
    teacher = torch.log_softmax(torch.randn(4, 7, 5), dim=-1)
    assert distillation_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(4, 7, 5, requires_grad=True)
    loss = distillation_loss(torch.log_softmax(student, dim=-1), teacher)
    assert loss.item() > 0
    loss.backward()
    assert student.grad is not None and not teacher.requires_grad
    # a KL per position: the same divergence at every position gives that divergence
    one = torch.log_softmax(torch.tensor([[[2.0, 0.0]]]), dim=-1)
    other = torch.log_softmax(torch.tensor([[[0.0, 2.0]]]), dim=-1)
    expected = float((one.exp() * (one - other)).sum())
    assert distillation_loss(other.expand(3, 4, 2), one.expand(3, 4, 2)).item() == \
        pytest.approx(expected, rel=1e-5)


def _model_file(family: str, alphabet: Alphabet, width: int = 96) -> ModelFile:
    shape = DataShape(alphabet.num_classes, 32, width, (3,), float(width))
    network = build(family, **family_class(family).configure(shape))
    card = ModelCard(family=family, config=network.config, decoder=network.decoder,
                     alphabet=alphabet.symbols, preprocessing=Preprocessing(32, width))
    return ModelFile(state_to_numpy(network), card)


def test_a_teacher_without_symbol_probabilities_or_a_mismatched_student_is_refused():
    alphabet = Alphabet("abc")
    with pytest.raises(ConfigError, match="heatmap model's outputs are not per-position"):
        load_teacher(_model_file("heatmap", alphabet), "t.safetensors", torch.device("cpu"))
    teacher = load_teacher(_model_file("crnn", alphabet), "t.safetensors", torch.device("cpu"))
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    other = load_teacher(_model_file("crnn", Alphabet("abcd")), "o.safetensors",
                         torch.device("cpu"))  # one more symbol: outputs of another size
    with pytest.raises(ConfigError, match="differ from the teacher's"):
        check_student(other, teacher, 32, 96)
    check_student(teacher, teacher, 32, 96)
    with pytest.raises(ConfigError, match="`teacher` trains a fresh student"):
        TrainConfig(teacher="t.safetensors", init="i.safetensors").validate()


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory):
    work = tmp_path_factory.mktemp("distill")
    data = generate("rings", 60, work / "data", seed=3, workers=1)
    result = train(data, work / "teacher", TrainConfig(epochs=1), log=lambda _: None,
                   show_progress=False)
    return data, result.model_path, work


def test_the_student_reads_like_its_teacher_and_learns_its_outputs(small_teacher, tmp_path):
    data, teacher, work = small_teacher
    unlabelled = generate("rings", 12, work / "unlabelled", seed=9, workers=1)
    for path in unlabelled.glob("*.jsonl"):
        path.unlink()
    messages: list[str] = []
    config = TrainConfig(epochs=1, width_multiplier=0.5, pseudo_threshold=0.0)
    result = distill(teacher, data, tmp_path / "student", config, unlabelled,
                     log=messages.append, show_progress=False)
    student, source = read_card(result.model_path), read_card(teacher)
    assert student.alphabet == source.alphabet and student.family == source.family
    assert student.preprocessing == source.preprocessing
    assert student.config["widths"] == [w // 2 for w in source.config["widths"]]
    assert student.training.config["teacher"] == str(teacher)
    read = [m for m in messages if m.startswith("the teacher reads")]
    assert read and read[0].startswith("the teacher reads ") and "of 12 unlabelled" in read[0]
    assert any(m.startswith("distilling ") for m in messages)
    # the teacher's term changes what the student learns (same seed, same batches)
    plain = distill(teacher, data, tmp_path / "plain",
                    TrainConfig(epochs=1, width_multiplier=0.5, distill_weight=0.0),
                    log=lambda _: None, show_progress=False)
    taught = distill(teacher, data, tmp_path / "taught",
                     TrainConfig(epochs=1, width_multiplier=0.5), log=lambda _: None,
                     show_progress=False)
    a, b = load_model_file(plain.model_path).tensors, load_model_file(taught.model_path).tensors
    assert any(not np.array_equal(a[k], b[k]) for k in a)


def test_distill_from_the_command_line(small_teacher, tmp_path, capsys):
    data, teacher, _ = small_teacher
    out = tmp_path / "student"
    assert main(["distill", str(teacher), str(data), "--out", str(out), "--epochs", "1",
                 "--quiet"]) == 0
    assert read_card(out / "model.safetensors").config["widths"] == [8, 16, 32, 64]
    assert "-> " in capsys.readouterr().out
    assert main(["distill", str(teacher), str(data), "--out", str(tmp_path / "g"),
                 "--grey", "darkest", "--quiet"]) == 1
    assert "keep the preprocessing" in capsys.readouterr().err
    assert main(["distill", str(teacher), str(data), "--out", str(tmp_path / "h"),
                 "--height", "48", "--quiet"]) == 1
    assert "--height: the student reads like" in capsys.readouterr().err
