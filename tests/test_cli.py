"""The command line: outputs, exit codes and one-line errors."""

import json
import shutil

import pytest
from PIL import Image

from captchalab.cli import main


@pytest.mark.slow
def test_evaluate_json_has_the_promised_keys(trained_model, rings_test, tmp_path, capsys):
    assert main(["evaluate", str(trained_model), str(rings_test), "--json",
                 "--report", str(tmp_path / "report")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("sequence_accuracy", "char_accuracy", "cer", "count", "images_per_second"):
        assert key in metrics
    assert metrics["count"] == 150
    rows = (tmp_path / "report" / "errors.csv").read_text().splitlines()
    assert rows[0] == "path,truth,prediction,confidence"
    assert len(rows) - 1 == round((1 - metrics["sequence_accuracy"]) * 150)
    assert (tmp_path / "report" / "errors.png").is_file()


@pytest.mark.slow
def test_predict_reports_bad_files_and_reads_the_rest(trained_model, rings_test, tmp_path,
                                                      capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(rings_test.glob("*.png"))[:3]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"not a png")
    code = main(["predict", str(trained_model), str(folder), str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        name, text, confidence = line.split("\t")
        assert len(text) == 6 and 0.0 <= float(confidence) <= 1.0
    assert "broken.png" in captured.err and "missing.png" in captured.err


@pytest.mark.slow
def test_predict_json_lines_and_stdin(trained_model, rings_test, capsys, monkeypatch):
    import io

    path = sorted(rings_test.glob("*.png"))[0]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    assert main(["predict", str(trained_model), "-", str(path), "--json"]) == 0
    first, second = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert first["path"] == "-" and second["path"] == str(path)
    assert first["text"] == second["text"]
    assert len(first["char_confidences"]) == len(first["text"])


def test_train_on_bad_folder_names_the_files(tmp_path, capsys):
    for i in range(4):
        Image.new("L", (40, 16), 255).save(tmp_path / f"ab{i}.png")
    (tmp_path / "zz.png").write_bytes(b"")
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "zz.png (empty file)" in err and "--skip-bad" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_train_with_skip_bad_says_how_many(tmp_path, capsys):
    for i in range(6):
        Image.new("L", (40, 16), 255).save(tmp_path / f"ab{i}.png")
    (tmp_path / "zz.png").write_bytes(b"")
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--skip-bad", "--quiet"])
    assert code == 0 and "skipped 1 bad file(s) of 7" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "nowhere.safetensors", "."], "no such model file"),
    (["train", "no/such/folder", "--out", "x"], "not a folder"),
    (["generate", "nonsense", "--count", "3", "--out", "x"], "unknown captcha scheme"),
    (["train", ".", "--out", "x", "--from-scratch", "--init", "base"],
     "--from-scratch starts from fresh weights"),
])
def test_fatal_errors_are_one_line_with_exit_code_1(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_help_explains_each_command(capsys):
    for command in ("train", "evaluate", "predict", "generate", "base-model"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
    assert "--max-minutes" in capsys.readouterr().out


def test_train_keeps_an_existing_model_unless_told(tmp_path, capsys):
    for i in range(6):
        Image.new("L", (40, 16), 255).save(tmp_path / f"ab{i}.png")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"precious")
    argv = ["train", str(tmp_path), "--out", str(run), "--epochs", "1", "--quiet"]
    assert main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == b"precious"
    assert main([*argv, "--overwrite"]) == 0
    assert (run / "model.safetensors").read_bytes() != b"precious"


@pytest.mark.parametrize("argv, named", [
    (["train", "d", "--val-split", "1.5"], "--val-split"),
    (["train", "d", "--epochs", "0"], "--epochs"),
    (["train", "d", "--batch-size", "x"], "--batch-size"),
    (["train", "d", "--max-minutes", "-1"], "--max-minutes"),
    (["train", "d", "--height", "8"], "--height"),
    (["audit", "d", "--seeds", "0"], "--seeds"),
    (["generate", "rings", "--count", "0", "--out", "o"], "--count"),
    (["serve", "m.onnx", "--port", "70000"], "--port"),
    (["serve", "m.onnx", "--batch-wait-ms", "-2"], "--batch-wait-ms"),
    (["predict", "m.onnx", "a.png", "--beam-width", "0"], "--beam-width"),
])
def test_invalid_arguments_are_named_before_any_work(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # the one line that matters, not the usage block
    assert f"argument {named}: expected" in err[0] and "--help'" in err[0]


def _every_parser():
    """The root parser and every command's, analyses included."""
    import argparse

    from captchalab.cli import parser

    pending, found = [parser()], []
    while pending:
        current = pending.pop()
        found.append(current)
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return found


def test_every_option_explains_itself_and_no_help_shows_a_literal_percent():
    import argparse

    for command in _every_parser():
        text = command.format_help()
        assert "%%" not in text and "%(" not in text, command.prog
        assert command.description or command.prog == "captchalab", command.prog
        for action in command._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{command.prog} {action.option_strings or action.dest}"


def test_compare_says_its_budget_is_per_family(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "each family's training" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_predict_into_a_closed_pipe_is_quiet(trained_model, rings_test):
    """``captchalab predict M folder/ | head -1``: no Broken pipe error, exit 0 or 141."""
    import subprocess
    import sys

    folders = " ".join([str(rings_test)] * 4)  # output in several writes, after head left
    command = (f"{sys.executable} -m captchalab predict {trained_model} {folders} "
               "| head -n 1; echo \"status ${PIPESTATUS[0]}\"")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            timeout=300)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].count("\t") == 2
    assert lines[1] in ("status 0", "status 141")
    assert "Broken pipe" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_evaluate_names_symbols_the_model_cannot_read(trained_model, rings_test, tmp_path,
                                                      capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    images = sorted(rings_test.glob("*.png"))
    for path in images[:6]:
        shutil.copy(path, folder / path.name)
    for i, path in enumerate(images[6:10]):  # four labels with symbols outside 234568
        shutil.copy(path, folder / f"{'x' + path.stem.split('_')[0][1:]}_{i}.png")
    assert main(["evaluate", str(trained_model), str(folder)]) == 0
    captured = capsys.readouterr()
    assert "cannot produce: 'x'" in captured.err
    assert "on the 6 images whose labels it can read" in captured.err
    assert main(["evaluate", str(trained_model), str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unknown_symbols"] == "x" and report["count"] == 10
    assert report["readable"]["count"] == 6
    assert report["readable"]["sequence_accuracy"] >= report["sequence_accuracy"]


@pytest.mark.parametrize("flags, message", [
    (["--width-multiplier", "9"], "--width-multiplier"),
    (["--ema", "0"], "--ema"),
])
def test_recipe_levers_out_of_range_name_their_flag(flags, message, tmp_path, capsys):
    for i in range(4):
        Image.new("L", (40, 16), 255).save(tmp_path / f"ab{i}.png")
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "run"), *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_recipe_levers_reach_the_model_file(tmp_path, capsys):
    from captchalab.runtime.model_file import read_card

    for i in range(8):
        Image.new("RGB", (40, 16), (255, 255, 255)).save(tmp_path / f"ab{i}.png")
    run = tmp_path / "run"
    code = main(["train", str(tmp_path), "--out", str(run), "--epochs", "1", "--quiet",
                 "--grey", "darkest", "--width-multiplier", "0.5", "--ema", "0.9",
                 "--augment-captcha", "--schedule", "until-converged"])
    assert code == 0
    card = read_card(run / "model.safetensors")
    assert card.preprocessing.grey == "darkest"
    assert card.config["widths"] == [8, 16, 32, 64] and card.config["hidden"] == 48  # halved
    summary = json.loads((run / "summary.json").read_text())
    assert summary["schedule"]["kind"] == "until-converged"
    assert card.training.config["ema"] == 0.9 and card.training.config["augment_captcha"]


def test_recipe_lever_switches_reach_the_training_config():
    """The defaults (EMA on, captcha augmentation on for crnn) and their opposite switches."""
    from captchalab.cli import parser
    from captchalab.cli.options import train_config
    from captchalab.training import TrainConfig

    def parsed(*flags: str):
        return parser().parse_args(["train", "data", "--out", "o", *flags])

    def config(*flags: str) -> TrainConfig:
        return train_config(parsed(*flags), "crnn")

    assert config().ema == TrainConfig().ema == 0.999 and config().captcha_augmentation
    assert not TrainConfig(model="multilabel").captcha_augmentation  # not measured there
    switched = config("--no-ema", "--no-augment-captcha")
    assert switched.ema is None and not switched.captcha_augmentation
    assert TrainConfig(model="multilabel", augment_captcha=True).captcha_augmentation
    assert parsed().balance_folders is None  # TrainConfig's None: on with --fine-tune
    assert parsed("--balance-folders").balance_folders is True
    assert parsed("--no-balance-folders").balance_folders is False
