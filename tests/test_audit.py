"""Audit: sizes, the labels-needed interpolation, confusions, and a real tiny audit."""

import json

import pytest

from captchalab.experiments.audit import (
    audit,
    confusion_pairs,
    labels_needed,
    parse_sizes,
    run_minutes,
    verdict,
)
from captchalab.training import TrainConfig


def test_sizes_are_sorted_capped_and_checked():
    assert parse_sizes("400,25,all,50", 300) == [25, 50, 300]
    with pytest.raises(ValueError, match="`sizes` takes positive numbers"):
        parse_sizes("25,lots", 300)


def test_budget_is_shared_by_square_root_of_size():
    minutes = run_minutes([25, 100], 3.0)
    assert minutes == pytest.approx([1.0, 2.0])


def test_labels_needed_interpolates_on_a_log_scale():
    curve = [{"size": 25, "mean": 0.2}, {"size": 100, "mean": 0.6}, {"size": 400, "mean": 0.95}]
    assert labels_needed(curve, 0.2) == 25
    assert labels_needed(curve, 0.4) == pytest.approx(50, rel=0.01)  # halfway in log size
    assert labels_needed(curve, 0.99) is None
    assert verdict(curve, {"90%": labels_needed(curve, 0.9)}).startswith(
        "An attacker with 400 labelled captchas solves 95.0%")


def test_confusions_count_substituted_characters():
    pairs = confusion_pairs(["ab1", "ab1", "xyz"], ["ab7", "cb7", "xy"])
    assert pairs == {("1", "7"): 2, ("a", "c"): 1}


@pytest.mark.slow
def test_a_tiny_audit_writes_its_three_reports(tmp_path):
    from captchalab.generators import generate

    data = generate("rings", 70, tmp_path / "data", seed=4)
    report = audit(data, tmp_path / "audit", "10,30,all", TrainConfig(val_split=0.2),
                   max_minutes=0.6, seeds=2, log=lambda _: None, show_progress=False)
    assert [p["size"] for p in report.curve] == [10, 30, 56]
    assert [p["runs"] for p in report.curve] == [2, 2, 1]  # one run of every image
    for name in ("audit.json", "audit.md", "audit.png"):
        assert (tmp_path / "audit" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert saved["setting"]["val_count"] == 14 and len(saved["runs"]) == 5
    assert all(0.0 <= run["accuracy"] <= 1.0 for run in saved["runs"])
    assert report.verdict in (tmp_path / "audit" / "audit.md").read_text()


@pytest.mark.slow
def test_a_starved_audit_gives_no_verdict_but_the_budget_it_needs(tmp_path, capsys):
    """A few seconds for four runs: each stops long before half its schedule, so the audit
    must not say the scheme resists (0% read), and says what budget it would need."""
    from captchalab.cli import main
    from captchalab.generators import generate

    data = generate("rings", 70, tmp_path / "data", seed=4)
    out = tmp_path / "audit"
    assert main(["audit", str(data), "--out", str(out), "--sizes", "25,50", "--seeds", "2",
                 "--max-minutes", "0.05", "--quiet"]) == 0
    saved = json.loads((out / "audit.json").read_text())
    assert len(saved["runs"]) == 4
    assert all(run["starved"] and run["schedule_share"] < 0.5 for run in saved["runs"])
    assert saved["starved_runs"] == 4 and saved["minutes_needed"] > 0.05
    assert saved["verdict"].startswith("No verdict: the budget was too small")
    assert "attacker solves" not in saved["verdict"]
    markdown = (out / "audit.md").read_text()
    assert saved["verdict"] in markdown and "(starved)" in markdown
    assert f"about {saved['minutes_needed']:.0f} minutes" in capsys.readouterr().out


def test_a_verdict_needs_runs_that_ran_their_schedule():
    curve = [{"size": 25, "mean": 0.0}, {"size": 50, "mean": 0.0}]
    assert verdict(curve, {"90%": None}, starved=2, minutes_needed=9).startswith("No verdict")
    assert verdict(curve, {"90%": None}).startswith("With 50 labelled captchas")


@pytest.mark.slow
def test_a_self_training_audit_reads_the_pool_unlabelled(tmp_path, capsys):
    """Each run self-trains on the pool's images outside its subset, never on validation
    images, and the report names that attacker."""
    from captchalab.cli import main
    from captchalab.generators import generate

    data = generate("rings", 60, tmp_path / "data", seed=4)
    out = tmp_path / "audit"
    assert main(["audit", str(data), "--out", str(out), "--sizes", "20", "--seeds", "1",
                 "--max-minutes", "1", "--self-train", "--quiet"]) == 0
    saved = json.loads((out / "audit.json").read_text())
    assert saved["setting"]["self_training"] is True
    assert "self-trains on the other training images" in saved["setting"]["attacker"]
    report = json.loads((out / "runs" / "20-seed0" / "self_training.json").read_text())
    assert report["unlabelled"] == 48 - 20  # the pool (60 less 12 validation) less the subset
    assert report["rounds"][0]["pseudo_labelled"] == 0
    assert "self-trains" in capsys.readouterr().out  # audit.md, printed


def test_a_self_training_audit_refuses_a_family_that_reads_no_strings(tmp_path):
    from captchalab.training.config import ConfigError

    with pytest.raises(ConfigError, match="reads no strings"):
        audit(tmp_path, tmp_path / "audit", "10", TrainConfig(model="multilabel"),
              self_training=True, log=lambda _: None, show_progress=False)
