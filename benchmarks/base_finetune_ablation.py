"""One fine-tuning run from the base model on a small labelled subset, with recipe changes.

The subset and the validation images are those of ``benchmarks/base_model.py`` (20%
validation, seed 0; the subset drawn by size and seed); the run is also read on up to 300
other labelled images of the pool that it neither trains nor selects on. Appends one JSON
line to ``--log``. Changes are ``TrainConfig`` fields as JSON values:

    python benchmarks/base_finetune_ablation.py swust_2020 25 0 lr1e-3 learning_rate=1e-3
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from base_model import folder_of  # noqa: E402

from captchalab import Recognizer  # noqa: E402
from captchalab.data import read_labelled_folder, split_samples  # noqa: E402
from captchalab.training import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("size", type=int, help="labels to train on (the pool's size: all)")
    parser.add_argument("seed", type=int)
    parser.add_argument("tag", help="the run's name in the log")
    parser.add_argument("changes", nargs="*", help="FIELD=JSON, e.g. learning_rate=1e-3")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/base_finetune"))
    parser.add_argument("--log", type=Path, default=Path("benchmarks/runs/base_finetune.jsonl"))
    args = parser.parse_args()
    changes = {k: json.loads(v) for k, v in (c.split("=", 1) for c in args.changes)}
    data = folder_of(args.dataset)
    pool, val = split_samples(read_labelled_folder(data).samples, 0.2, 0)
    subset = random.Random(f"base-bench:{args.dataset}:{args.size}:{args.seed}").sample(
        pool, args.size)
    rest = [s for s in pool if s not in subset][:300]
    config = TrainConfig(seed=args.seed, overwrite=True, **changes)
    started = time.time()
    result = train(data, args.out / f"{args.dataset}-{args.size}-{args.seed}-{args.tag}",
                   config, log=lambda _: None, show_progress=False, split=(subset, val))
    readings = Recognizer.load(result.model_path).predict([s.path for s in rest]) if rest else []
    row = {"dataset": args.dataset, "size": args.size, "seed": args.seed, "tag": args.tag,
           "changes": changes, "val": result.metrics["sequence_accuracy"],
           "test": sum(p.text == s.label for p, s in zip(readings, rest)) / len(rest)
           if rest else None, "test_images": len(rest),
           "minutes": round((time.time() - started) / 60, 2), "ended": result.ended,
           "steps": result.steps}
    print(json.dumps(row), flush=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
