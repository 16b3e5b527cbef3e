"""CPU images/s of every model in a ``captchalab compare`` output folder, measured alone.

    python benchmarks/family_speed.py runs/compare_v2 [--repeats 3]

Reads ``DIR/compare.json``, loads each trained model on the CPU and times the whole pipeline
(image file -> preprocessing -> network -> decoder) on the comparison's validation images,
best of ``--repeats``; prints a JSON object model -> images/s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from captchalab.data import read_labelled_folder, split_samples
from captchalab.experiments.compare import measure_speed
from captchalab.runtime import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a compare output folder")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = json.loads((args.folder / "compare.json").read_text())
    setting = report["setting"]
    samples = read_labelled_folder(setting["data"]).samples
    _, val = split_samples(samples, setting["val_split"], setting["seed"])
    paths = [s.path for s in val]
    speeds = {}
    for entry in report["results"]:
        if entry["error"]:
            continue
        recognizer = Recognizer.load(entry["model_path"], device="cpu")
        speeds[entry["model"]] = round(max(measure_speed(recognizer, paths)
                                           for _ in range(args.repeats)), 1)
    print(json.dumps(speeds, indent=2))


if __name__ == "__main__":
    main()
