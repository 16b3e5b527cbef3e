"""How to choose a self-training round when a few validation images tie.

A user with 50 labels validates on about 5 of them, so the rounds' validation accuracies
tie more often than not. For the `base+unlabelled` runs of `benchmarks/base_model.py`
folders, this reads each round's model on the run's validation images (correct or not,
and the CTC loss of the label, per image) and on its 300 held-out images, then draws
random validation subsets of K images and lets each rule choose a round as self-training
does (stop at the first drop in accuracy, keep the best accuracy) with its tie-break:
the earlier round, the lower validation loss, or the later round. Prints the mean
held-out accuracy of the chosen rounds per rule and K, and what the best round would read.

    python benchmarks/round_choice.py benchmarks/runs/self2 benchmarks/runs/few_unlabelled
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from base_model import held_out  # noqa: E402

from captchalab import Recognizer  # noqa: E402
from captchalab.training.self_training import next_round  # noqa: E402

RULES = ("earlier", "lower loss", "later")


def per_image(model: Path, samples) -> tuple[np.ndarray, np.ndarray]:
    """Whether each sample is read right, and its CTC loss per label symbol."""
    recognizer = Recognizer.load(model)
    pixels = np.stack([recognizer.prepare(s.path) for s in samples])
    outputs = recognizer.outputs(pixels)
    right = np.array([p.text == s.label for p, s in zip(recognizer.decode(outputs), samples)])
    log_probs = torch.from_numpy(np.asarray(outputs, dtype=np.float32)).log_softmax(-1)
    losses = []
    for i, sample in enumerate(samples):
        target = torch.tensor([recognizer.alphabet.encode(sample.label)])
        losses.append(float(F.ctc_loss(log_probs[i:i + 1].transpose(0, 1), target,
                                       torch.tensor([log_probs.shape[1]]),
                                       torch.tensor([target.shape[1]]), blank=0,
                                       reduction="mean", zero_infinity=True)))
    return right, np.array(losses)


def choose(accuracy: list[float], loss: list[float], rule: str) -> int:
    """The round self-training keeps: the rounds run as self-training's own stopping rule
    lets them (``next_round``); the best accuracy wins, ties broken by ``rule``."""
    seen = next((k for k in range(1, len(accuracy) + 1) if not next_round(accuracy[:k])[0]),
                len(accuracy))  # the round that dropped was run too
    tie = {"earlier": lambda r: -r, "lower loss": lambda r: -loss[r], "later": lambda r: r}
    return max(range(seen), key=lambda r: (accuracy[r], tie[rule](r)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", type=Path, nargs="+", help="base_model.py --out folders")
    parser.add_argument("--sizes", default="5,10,20", help="validation images drawn, K")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--val-split", type=float, default=0.2)
    args = parser.parse_args()
    runs = []
    for out in args.outs:
        for line in (out / "runs.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("start") != "base+unlabelled":
                continue
            val, _, test = held_out(row["dataset"], args.val_split)
            run = out / "runs" / "-".join(map(str, row["key"]))
            rounds = sorted(run.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
            reads = [per_image(r / "model.safetensors", val) for r in rounds]
            held = [per_image(r / "model.safetensors", test)[0].mean() for r in rounds]
            runs.append((f"{out.name}/{run.name}", reads, held))
            whole = ([float(right.mean()) for right, _ in reads],
                     [float(losses.mean()) for _, losses in reads])
            print(f"{runs[-1][0]}: held-out by round {[f'{h:.1%}' for h in held]}; on all "
                  "validation images it keeps " + ", ".join(
                      f"{rule}: {choose(*whole, rule)}" for rule in RULES), flush=True)
    rng = random.Random(0)
    for size in [int(k) for k in args.sizes.split(",")] + [0]:
        totals = {rule: 0.0 for rule in RULES}
        for _, reads, held in runs:
            count = len(reads[0][0])
            for _ in range(args.draws if size else 1):
                pick = rng.sample(range(count), size) if size else list(range(count))
                accuracy = [float(right[pick].mean()) for right, _ in reads]
                loss = [float(losses[pick].mean()) for _, losses in reads]
                for rule in RULES:
                    totals[rule] += held[choose(accuracy, loss, rule)] / (
                        len(runs) * (args.draws if size else 1))
        best = np.mean([max(held) for _, _, held in runs])
        print(f"{size or 'all'} validation images: " + ", ".join(
            f"{rule} {total:.2%}" for rule, total in totals.items())
            + f"; the best round {best:.2%} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
