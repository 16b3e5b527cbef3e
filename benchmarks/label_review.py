"""Accuracy of recorded runs against labels reviewed by eye.

``recipe_ablation.py`` records each shared-set run's validation mistakes (file, label,
reading). A review file (``benchmarks/label_reviews/NAME.json``) gives, for images whose
label does not match what the image shows, what it shows, and lists the images that are
ambiguous in their font. This script splits each run's mistakes into: the label was wrong
and the reading right, the label was wrong and so was the reading, ambiguous, and the
model's own mistakes; and gives the accuracy against the reviewed labels.

    python benchmarks/label_review.py benchmarks/runs/swust3/runs.jsonl \\
        --review benchmarks/label_reviews/swust_2019b.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def review_run(row: dict, shows: dict[str, str], ambiguous: dict[str, str]) -> dict:
    """One run's mistakes sorted by cause, and its accuracy against the reviewed labels."""
    causes = {"label_wrong_reading_right": 0, "label_wrong_reading_wrong": 0,
              "ambiguous": 0, "model": 0}
    for name, _, reading in row["mistakes"]:
        if name in shows:
            right = reading == shows[name]
            causes["label_wrong_reading_right" if right else "label_wrong_reading_wrong"] += 1
        elif name in ambiguous:
            causes["ambiguous"] += 1
        else:
            causes["model"] += 1
    count = row["val_count"]
    wrong = len(row["mistakes"]) - causes["label_wrong_reading_right"]
    return {"variant": row["variant"], "seed": row["seed"], "count": count,
            "accuracy": row["sequence_accuracy"], "reviewed_accuracy": 1 - wrong / count,
            "reviewed_without_ambiguous": 1 - (wrong - causes["ambiguous"]) / count, **causes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a runs.jsonl of recipe_ablation.py")
    parser.add_argument("--review", type=Path, required=True)
    args = parser.parse_args()
    review = json.loads(args.review.read_text())
    rows = [json.loads(line) for line in args.runs.read_text().splitlines()]
    rows = [r for r in rows if r["dataset"] == review["dataset"] and "mistakes" in r]
    for row in rows:
        print(json.dumps(review_run(row, review["shows"], review.get("ambiguous", {}))))


if __name__ == "__main__":
    main()
