"""Which retraining brings a live model back after a scheme change, with 200 new labels.

The setting of benchmarks/loop_closes.py without the service: a live model trained on 2000
`strike` captchas (seed 1), 200 labelled captchas of the changed scheme
(`benchmarks/schemes/strike_changed.toml`, the first 200 of 1500, seed 3), the other 1300
unlabelled; each recipe is read on 300 fresh changed captchas (seed 4) and 300 fresh old
ones (seed 2). Results append to OUT/results.jsonl.

    python benchmarks/loop_recipes.py --out benchmarks/runs/loop_recipes [RECIPE,...]
        [--changed SCHEME] [--live MODEL]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_closes import CHANGED  # noqa: E402
from loop_closes import run as cli  # noqa: E402


def accuracy(model: Path, folder: Path) -> float:
    from captchalab import Recognizer

    reading = Recognizer.load(model).read_folder(folder)
    return sum(p.text == t for p, t in zip(reading.predictions, reading.truths)) / len(
        reading.truths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="?", help="comma-separated; default: every recipe")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/loop_recipes"))
    parser.add_argument("--changed", type=Path, default=CHANGED,
                        help="the changed scheme (default: strike_changed.toml)")
    parser.add_argument("--live", type=Path,
                        help="a live model trained before on the same A images")
    args = parser.parse_args()
    out = args.out
    for name, scheme, n, seed in (("a_train", "strike", 2000, 1), ("a_test", "strike", 300, 2),
                                  ("b_pool", args.changed, 1500, 3),
                                  ("b_test", args.changed, 300, 4)):
        if not (out / name / "annotations.jsonl").exists():
            cli("generate", str(scheme), "--count", str(n), "--out", str(out / name), "--seed",
                str(seed))
    from captchalab.data import read_labelled_folder
    pool = read_labelled_folder(out / "b_pool").samples
    lab, unl = out / "labelled200", out / "unlabelled"
    if not lab.exists():
        lab.mkdir(parents=True)
        unl.mkdir()
        for i, s in enumerate(pool):
            if i < 200:
                shutil.copy(s.path, lab / s.path.name)
            else:
                shutil.copy(s.path, unl / f"{i}.png")
    live = args.live or out / "live" / "model.safetensors"
    results = {}
    if args.live is None and not live.exists():
        results["live_minutes"] = cli("train", str(out / "a_train"), "--out", str(out / "live"),
                                      "--overwrite")
    results["live"] = {"b": accuracy(live, out / "b_test"), "a": accuracy(live, out / "a_test")}
    print(json.dumps(results), flush=True)
    variants = {
        "live_finetune_A+L": [str(out / "a_train"), str(lab), "--init", str(live), "--fine-tune"],
        "live_finetune_L": [str(lab), "--init", str(live), "--fine-tune"],
        # the loop's recipe with a schedule about four times as long
        "live_finetune_A+L_20epochs": [str(out / "a_train"), str(lab), "--init", str(live),
                                       "--fine-tune", "--epochs", "20"],
        "base_default_L": [str(lab)],
        "base_default_A+L_bal": [str(out / "a_train"), str(lab), "--balance-folders"],
        "live_finetune_A+L_selftrain": [str(out / "a_train"), str(lab), "--init", str(live),
                                        "--fine-tune", "--unlabelled", str(unl)],
        # validated on new labels only, so that the rounds are chosen on the changed scheme
        "live_finetune_L_selftrain": [str(lab), "--init", str(live), "--fine-tune",
                                      "--unlabelled", str(unl)],
        "base_default_L_selftrain": [str(lab), "--unlabelled", str(unl)],
        # a reference, not a recipe: all 1500 changed captchas labelled (what 200 labels
        # and the unlabelled rest could at best come to with the loop's short fine-tune)
        "live_finetune_A+all1500": [str(out / "a_train"), str(out / "b_pool"), "--init",
                                    str(live), "--fine-tune"],
        # the same with the whole default recipe from the base model (15-minute budget)
        "base_default_A+all1500_bal": [str(out / "a_train"), str(out / "b_pool"),
                                       "--balance-folders"],
    }
    only = args.recipes.split(",") if args.recipes else list(variants)
    for name in only:
        minutes = cli("train", *variants[name], "--out", str(out / name), "--overwrite")
        m = out / name / "model.safetensors"
        results[name] = {"minutes": minutes, "b": accuracy(m, out / "b_test"),
                         "a": accuracy(m, out / "a_test")}
        print(json.dumps({name: results[name]}), flush=True)
        with open(out / "results.jsonl", "a") as stream:
            stream.write(json.dumps({name: results[name]}) + "\n")


if __name__ == "__main__":
    main()
