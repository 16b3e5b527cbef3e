"""The loop closes: a served model meets a changed captcha scheme, and comes back.

1. Train the live model on scheme A (the `strike` preset, 2000 images), export it, serve it
   with a review queue (`--review-below 0.9`) and a labelled folder.
2. Traffic: fresh A captchas (accuracy before), then captchas of the changed scheme B
   (`--changed`; by default `benchmarks/schemes/strike_changed.toml`, which changes
   everything at once; `strike_restyled.toml` is a restyle of like difficulty): accuracy
   just after, and after how many requests `/v1/models` shows the drift flag.
3. Label 50, then 200, of the queued images through the labelling API (`POST /v1/label`,
   least confident first, with the true labels: the generator knows them), fine-tune from
   the live model on A plus the labels (`train A labelled --init live --fine-tune`),
   export, and swap it in (`POST /v1/models/live/reload`); accuracy on fresh B captchas
   (and on A) after each. Every step is timed.

    python benchmarks/loop_closes.py --out benchmarks/runs/loop [--changed SCHEME]
        [--live MODEL]

`--live` serves a live model trained before on the same A images (another run's
OUT/live/model.safetensors) instead of training one. `--seed N` draws other B traffic and
test images (seeds 3 + 10N and 4 + 10N) and fine-tunes with `--seed N`: repeats of the
loop from one live model.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import free_port  # noqa: E402

from captchalab.data import read_labelled_folder  # noqa: E402

HERE = Path(__file__).resolve().parent
CHANGED = HERE / "schemes" / "strike_changed.toml"
CLI = [sys.executable, "-m", "captchalab.cli"]


def run(*args: str) -> float:
    """Run the captchalab CLI; its minutes."""
    started = time.perf_counter()
    subprocess.run([*CLI, *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return round((time.perf_counter() - started) / 60, 2)


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=60) as answer:
        return json.loads(answer.read())


def read(url: str, samples) -> float:
    """Accuracy of the served model on labelled samples, one request each."""
    right = 0
    for sample in samples:
        body = {"image": base64.b64encode(sample.path.read_bytes()).decode()}
        right += post(url, "/v1/recognize", body)["results"][0]["text"] == sample.label
    return right / len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/loop"))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--result", type=Path, default=HERE / "results_loop.json")
    parser.add_argument("--changed", type=Path, default=CHANGED,
                        help="the scheme B the service meets after the change")
    parser.add_argument("--live", type=Path,
                        help="a live model trained before on the same A images")
    parser.add_argument("--seed", type=int, default=0,
                        help="draws of B's images and the fine-tunes' seed (repeats)")
    args = parser.parse_args()
    out = args.out
    steps: dict[str, float] = {}
    steps["generate"] = sum([
        run("generate", "strike", "--count", str(args.train), "--out", str(out / "a_train"),
            "--seed", "1"),
        run("generate", "strike", "--count", "300", "--out", str(out / "a_test"), "--seed",
            "2"),
        run("generate", str(args.changed), "--count", "1500", "--out",
            str(out / "b_traffic"), "--seed", str(3 + 10 * args.seed)),
        run("generate", str(args.changed), "--count", "300", "--out", str(out / "b_test"),
            "--seed", str(4 + 10 * args.seed))])
    live = args.live or out / "live" / "model.safetensors"
    if args.live is None:
        steps["train_live"] = run("train", str(out / "a_train"), "--out", str(out / "live"),
                                  "--overwrite")
    run("export", str(live), "--out", str(out / "live.onnx"), "--overwrite")
    port = free_port()
    review, labelled = out / "review", out / "labelled"
    server = subprocess.Popen([*CLI, "serve", f"{out / 'live.onnx'}=live", "--port", str(port),
                               "--review-dir", str(review), "--review-below", "0.9",
                               "--labelled-dir", str(labelled)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            get(url, "/healthz")
            break
        except OSError:
            time.sleep(0.2)
    report: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "changed_scheme": args.changed.name, "live_model": str(live),
                    "seed": args.seed}
    try:
        a_test = read_labelled_folder(out / "a_test").samples
        b_test = read_labelled_folder(out / "b_test").samples
        traffic = read_labelled_folder(out / "b_traffic").samples
        truth = {hashlib.sha256(s.path.read_bytes()).hexdigest()[:24]: s.label for s in traffic}
        report["accuracy_a_before"] = read(url, a_test)
        drift_at, right = None, 0
        for i, sample in enumerate(traffic, 1):
            body = {"image": base64.b64encode(sample.path.read_bytes()).decode()}
            right += post(url, "/v1/recognize", body)["results"][0]["text"] == sample.label
            if i == 200:
                report["accuracy_b_first_200_requests"] = right / 200
            if drift_at is None and i % 10 == 0 and get(url, "/v1/models")["models"][0]["drift"]:
                drift_at = i
        report["drift_flag_after_requests"] = drift_at
        report["review"] = get(url, "/v1/models")["review"]
        labelled_so_far = 0
        for target in (50, 200):
            started = time.perf_counter()
            # traffic images only: the accuracy reads also put test images on the queue
            items = [item for item in get(url, "/v1/label/queue")["items"]
                     if Path(item["file"]).stem in truth]
            for item in items:
                if labelled_so_far == target:
                    break
                label = truth[Path(item["file"]).stem]  # what a person would type
                try:
                    post(url, "/v1/label", {"file": item["file"], "label": label})
                except urllib.error.HTTPError as error:  # dropped meanwhile (folder bound)
                    if error.code != 404:
                        raise
                    continue
                labelled_so_far += 1
            name = f"tuned_{target}"
            minutes = run("train", str(out / "a_train"), str(labelled), "--init",
                          str(live), "--fine-tune", "--seed", str(args.seed), "--out",
                          str(out / name), "--overwrite")
            run("export", str(out / name / "model.safetensors"), "--out",
                str(out / f"{name}.onnx"), "--overwrite")
            swap = time.perf_counter()
            post(url, "/v1/models/live/reload", {"path": str(out / f"{name}.onnx")})
            report[f"after_{target}_labels"] = {
                "labels": labelled_so_far, "fine_tune_minutes": minutes,
                "swap_seconds": round(time.perf_counter() - swap, 3),
                "accuracy_b": read(url, b_test), "accuracy_a": read(url, a_test),
                "step_minutes": round((time.perf_counter() - started) / 60, 2)}
            print(json.dumps(report, indent=2), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report["steps_minutes"] = steps
    args.result.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
