"""Constrained reading on the shared datasets: does a constraint change only what it should?

1. ``allowed``: a captcha_v2 model reads its validation images with the alphabet minus its
   most frequent symbol. Readings of captchas without that symbol should not change.
2. ``case``: a case-sensitive sysu model, read three ways and scored case-folded: its own
   readings lowercased afterwards, and ``case="lower"`` (both cases' probabilities added
   inside the decoder); and a model trained case-folded, read with ``case="upper"``.

    python benchmarks/constraints.py --v2-model V2_MODEL --sysu-model SYSU_MODEL \\
        --sysu-folded-model FOLDED_MODEL --out benchmarks/results_constraints.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from captchalab import Recognizer
from captchalab.data import read_labelled_folder, split_samples

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def validation(model: Recognizer, dataset: str):
    """The model's own validation images (its split, from its model card)."""
    recipe = model.card.training.config
    folder = read_labelled_folder(SHARED / dataset / "images")
    return split_samples(folder.samples, recipe["val_split"], recipe["seed"])[1]


def allowed_minus_one(model_path: Path) -> dict:
    model = Recognizer.load(model_path)
    val = validation(model, "captcha_v2")
    symbol = Counter("".join(s.label for s in val)).most_common(1)[0][0]
    allowed = model.alphabet.symbols.replace(symbol, "")
    paths = [s.path for s in val]
    free = model.predict(paths)
    held = model.predict(paths, allowed=allowed)
    without = [i for i, s in enumerate(val) if symbol not in s.label]
    changed = [val[i].path.name for i in without if free[i].text != held[i].text]
    return {
        "model": str(model_path), "validation_images": len(val), "removed_symbol": symbol,
        "images_without_it": len(without), "readings_changed_without_it": len(changed),
        "changed": changed,
        "accuracy_without_it_unconstrained": sum(free[i].text == val[i].label
                                                 for i in without) / len(without),
        "accuracy_without_it_constrained": sum(held[i].text == val[i].label
                                               for i in without) / len(without),
        # renormalised over fewer symbols, a reading's probability can only rise (to within
        # float32 precision: the network's outputs)
        "confidence_not_lowered": sum(held[i].confidence >= free[i].confidence - 1e-6
                                 for i in without) / len(without),
    }


def case_readings(case_sensitive: Path, folded: Path | None) -> dict:
    model = Recognizer.load(case_sensitive)
    val = validation(model, "sysu")
    paths, truths = [s.path for s in val], [s.label for s in val]
    own = [p.text for p in model.predict(paths)]
    lowered = [p.text for p in model.predict(paths, case="lower")]
    row = {
        "model": str(case_sensitive), "validation_images": len(val),
        "exact_case": sum(a == b for a, b in zip(own, truths)) / len(val),
        "folded_afterwards": sum(a.lower() == b.lower() for a, b in zip(own, truths)) / len(val),
        "case_lower_in_the_decoder": sum(a == b.lower() for a, b in zip(lowered, truths))
        / len(val),
    }
    if folded is not None:
        other = Recognizer.load(folded)
        upper = [p.text for p in other.predict(paths, case="upper")]
        row["folded_model"] = str(folded)
        row["folded_model_read_upper"] = sum(a == b.upper() for a, b in zip(upper, truths)
                                             ) / len(val)
        row["folded_model_read_as_trained"] = sum(
            p.text == b.lower() for p, b in zip(other.predict(paths), truths)) / len(val)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v2-model", type=Path, required=True)
    parser.add_argument("--sysu-model", type=Path, required=True)
    parser.add_argument("--sysu-folded-model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_constraints.json"))
    args = parser.parse_args()
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "allowed": allowed_minus_one(args.v2_model),
              "case": case_readings(args.sysu_model, args.sysu_folded_model)}
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
