"""How right a self-training run's pseudo-labels are, by confidence threshold.

Reads the unlabelled images of a `benchmarks/base_model.py` run (``RUN/unlabelled``, links
under neutral names to labelled images of DATA) with one round's model, and compares each
reading with the image's label: how many readings reach each threshold and how many of
those match their label, then the mismatches at the lowest threshold shown.

    python benchmarks/pseudo_label_precision.py \\
        benchmarks/runs/self2/runs/swust_2019b-100-0-base+unlabelled \\
        ../shared/datasets/swust_2019b/images --round 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captchalab import Recognizer
from captchalab.data import read_labelled_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a base+unlabelled run's folder")
    parser.add_argument("data", type=Path, help="the labelled folder its pool came from")
    parser.add_argument("--round", type=int, default=2, help="whose model reads (round-N)")
    parser.add_argument("--thresholds", default="0.5,0.9,0.99")
    args = parser.parse_args()
    labels = {s.path.resolve(): s.label.lower() for s in read_labelled_folder(args.data).samples}
    images = sorted((args.run / "unlabelled").iterdir())
    recognizer = Recognizer.load(args.run / f"round-{args.round}" / "model.safetensors")
    readings = [(p.confidence, p.text, labels[path.resolve()], path.resolve().name)
                for path, p in zip(images, recognizer.predict(images, batch_size=64))]
    thresholds = sorted(float(t) for t in args.thresholds.split(","))
    for threshold in thresholds:
        kept = [r for r in readings if r[0] >= threshold]
        same = sum(text == label for _, text, label, _ in kept)
        print(f"P >= {threshold:g}: {len(kept)} of {len(readings)} read, {same} as labelled "
              f"({same / max(1, len(kept)):.1%})")
    print(f"read otherwise than labelled at P >= {thresholds[0]:g} (file: label -> reading, P):")
    for confidence, text, label, name in sorted(readings, reverse=True):
        if confidence >= thresholds[0] and text != label:
            print(f"  {name}: {label} -> {text}, {confidence:.4f}")


if __name__ == "__main__":
    main()
