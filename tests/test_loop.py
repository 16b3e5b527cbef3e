"""Closing the loop in the service: the review queue, hot reload, admin access, metrics and
the drift flag (on small untrained models: what is tested is the plumbing)."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from captchalab.data import Preprocessing
from captchalab.models import build
from captchalab.runtime import ModelCard, save_model_file
from captchalab.runtime.torch_backend import state_to_numpy
from captchalab.service import ServedModel, create_app
from captchalab.service.labelling import ReviewLabelQueue
from captchalab.service.metrics import DriftWatch
from captchalab.service.review import ReviewQueue, Unsure


def _model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build("crnn", num_classes=5, height=32, width=64, hidden=16,
                  widths=(4, 8, 8, 8)).eval()
    card = ModelCard(family="crnn", config=model.config, decoder="ctc", alphabet="abcd",
                     preprocessing=Preprocessing(32, 64))
    return save_model_file(path, state_to_numpy(model), card)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _json(seed: int) -> dict:
    return {"image": base64.b64encode(_png(seed)).decode()}


@pytest.fixture()
def model_path(tmp_path) -> Path:
    return _model(tmp_path / "live.safetensors", seed=0)


def test_the_review_queue_is_bounded_and_keeps_each_image_once(tmp_path):
    queue = ReviewQueue(tmp_path / "review", below=0.9, max_files=3)
    for seed in (1, 2, 2, 3, 4, 5):  # five images, one of them twice
        assert queue.offer(Unsure(_png(seed), ".png", "ab", 0.4, "m", "v1"))
    assert not queue.offer(Unsure(_png(9), ".png", "ab", 0.95, "m", "v1"))  # sure: not kept
    queue.flush()
    stats = queue.stats()
    queue.close()
    assert stats["images"] == 3 and stats["written"] == 5 and stats["duplicates"] == 1
    assert stats["dropped"] == 2  # the two oldest went
    images = sorted(p for p in (tmp_path / "review").iterdir() if p.suffix == ".png")
    notes = [json.loads(p.with_suffix(".json").read_text()) for p in images]
    assert all(n["reading"] == "ab" and n["version"] == "v1" and n["confidence"] == 0.4
               for n in notes)
    kept = {p.read_bytes() for p in images}
    assert kept == {_png(3), _png(4), _png(5)}


def test_unsure_readings_reach_the_queue_whole_under_concurrent_requests(tmp_path, model_path):
    review = ReviewQueue(tmp_path / "review", below=1.0)  # keep every reading
    app = create_app([ServedModel.load(model_path, "live")], review=review)
    with TestClient(app) as client:
        def post(seed: int) -> None:
            assert client.post("/v1/recognize", json=_json(seed % 6)).status_code == 200

        threads = [threading.Thread(target=post, args=(i,)) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        review.flush()
        stats = client.get("/v1/models").json()["review"]
    files = sorted((tmp_path / "review").iterdir())
    assert not [p for p in files if p.name.startswith(".")]  # no temporary file left
    assert stats["images"] == 6 and stats["duplicates"] == 18
    for image in (p for p in files if p.suffix == ".png"):
        note = json.loads(image.with_suffix(".json").read_text())  # whole JSON, every one
        assert note["model"] == "live" and 0.0 <= note["confidence"] <= 1.0
        assert image.read_bytes() in {_png(s) for s in range(6)}


def test_the_review_queue_is_labelled_and_emptied_through_label(tmp_path, model_path):
    review = ReviewQueue(tmp_path / "review", below=1.0)
    for seed, confidence in ((1, 0.3), (2, 0.1)):
        review.offer(Unsure(_png(seed), ".png", f"r{seed}", confidence, "live", "v1"))
    review.flush()
    served = ServedModel.load(model_path, "live")
    labels = ReviewLabelQueue(served.recognizer, tmp_path / "review", tmp_path / "labelled")
    state = labels.state()
    assert [i["guess"] for i in state["items"]] == ["r2", "r1"]  # least confident first
    first = state["items"][0]["file"]
    saved = labels.save(first, "abcd")
    assert saved.read_bytes() == _png(2) and not (tmp_path / "review" / first).exists()
    assert labels.state()["labelled"] == 1 and len(labels.state()["items"]) == 1
    labels.undo(saved.name)  # back in the queue, with its note
    assert (tmp_path / "review" / first).read_bytes() == _png(2)
    assert [i["guess"] for i in labels.state()["items"]] == ["r2", "r1"]


def test_a_reload_swaps_the_version_and_refuses_a_broken_file(tmp_path, model_path):
    app = create_app([ServedModel.load(model_path, "live")])
    loopback = ("127.0.0.1", 50000)
    with TestClient(app, client=loopback) as client:
        before = client.post("/v1/recognize", json=_json(1)).json()["version"]
        broken = tmp_path / "broken.safetensors"
        broken.write_bytes(b"not a model")
        refused = client.post("/v1/models/live/reload", json={"path": str(broken)})
        assert refused.status_code == 409 and "keeps serving" in refused.json()["error"]
        assert client.post("/v1/recognize", json=_json(1)).json()["version"] == before
        _model(model_path, seed=1)  # a new model in the same file
        swapped = client.post("/v1/models/live/reload")
        assert swapped.status_code == 200 and swapped.json()["previous"] == before
        after = client.post("/v1/recognize", json=_json(1)).json()["version"]
        assert after == swapped.json()["version"] != before
        assert client.get("/v1/models").json()["swaps"] == 1
        assert client.post("/v1/models/nope/reload").status_code == 404


def test_admin_endpoints_need_this_machine_or_the_token(model_path):
    app = create_app([ServedModel.load(model_path, "live")], admin_token="s3cret")
    with TestClient(app) as remote:  # the test client's address is not loopback
        assert remote.post("/v1/models/live/reload").status_code == 403
        wrong = remote.post("/v1/models/live/reload", headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 403 and "admin token" in wrong.json()["error"]
        right = remote.post("/v1/models/live/reload",
                            headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
    closed = create_app([ServedModel.load(model_path, "live")])  # no token: this machine only
    with TestClient(closed) as remote, TestClient(closed, client=("::1", 1)) as local:
        assert remote.post("/v1/models/live/reload",
                           headers={"Authorization": "Bearer s3cret"}).status_code == 403
        assert local.post("/v1/models/live/reload").status_code == 200


def test_metrics_are_prometheus_text_with_every_series(model_path):
    app = create_app([ServedModel.load(model_path, "live")])
    with TestClient(app) as client:
        for seed in range(3):
            client.post("/v1/recognize", json=_json(seed))
        client.post("/v1/recognize", json={"image": "not base64!"})
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("captchalab_requests", "captchalab_images", "captchalab_request_seconds",
                 "captchalab_batch_size", "captchalab_confidence", "captchalab_unsure_share",
                 "captchalab_drift"):
        assert name in families, name
    requests = {(s.labels["model"], s.labels["status"]): s.value
                for s in families["captchalab_requests"].samples if s.name.endswith("_total")}
    assert requests[("live", "200")] == 3 and requests[("unknown", "400")] == 1
    images = [s.value for s in families["captchalab_images"].samples
              if s.name == "captchalab_images_total"]
    assert images == [3.0]


def test_the_drift_flag_rises_with_unsure_readings_once(caplog):
    watch = DriftWatch(threshold=0.9, window=50)
    stream = [0.99] * 45 + [0.5] * 5 + [0.99] * 100  # 10% unsure at start, then steady
    assert not any(watch.add(c) for c in stream) and not watch.drifting
    turned = [watch.add(c) for c in [0.3] * 50]  # a changed scheme: every reading unsure
    assert watch.drifting and turned.count(True) == 1
    from captchalab.service.metrics import ServiceMetrics

    metrics = ServiceMetrics(review_below=0.9)
    with caplog.at_level(logging.WARNING, logger="captchalab.service"):
        metrics.readings("live", [0.99] * 200 + [0.2] * 200)
    warnings = [r for r in caplog.records if "may have changed" in r.getMessage()]
    assert len(warnings) == 1 and metrics.watch("live").drifting
    metrics.swapped("live")
    assert not metrics.watch("live").drifting


def test_watch_swaps_a_model_in_when_its_file_changes(model_path):
    import time
    import urllib.request

    from conftest import running_app

    app = create_app([ServedModel.load(model_path, "live")], watch=True)
    with running_app(app) as url:
        def version() -> str:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as answer:
                return json.loads(answer.read())["models"][0]["version"]

        before = version()
        time.sleep(0.5)  # the watcher is up
        _model(model_path, seed=2)  # written atomically, as train and export write
        deadline = time.monotonic() + 20
        while version() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert version() != before
