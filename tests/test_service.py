"""The HTTP service: answers, limits with JSON 4xx errors, micro-batching, labelling."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import urllib.request
from pathlib import Path

import httpx
import pytest
from conftest import serving
from fastapi.testclient import TestClient
from PIL import Image

from captchalab.cli import main
from captchalab.runtime import Recognizer
from captchalab.service import Limits, ServedModel, create_app
from captchalab.service.labelling import LabelQueue, check_label, save_without_overwrite


@pytest.fixture(scope="module")
def images(rings_test) -> list[Path]:
    return sorted(rings_test.glob("*.png"))[:8]


def _client(onnx_model, trained_model, limits: Limits | None = None, labels=None):
    limits = limits or Limits()
    models = [ServedModel.load(onnx_model, "rings", limits),
              ServedModel.load(trained_model, "torch", limits)]
    return TestClient(create_app(models, limits, labels))


def test_recognize_multipart_and_json_agree_with_the_recognizer(onnx_model, trained_model,
                                                               images):
    expected = [p.text for p in Recognizer.load(onnx_model).predict(images[:3])]
    with _client(onnx_model, trained_model) as client:
        files = [("file", (p.name, p.read_bytes(), "image/png")) for p in images[:3]]
        answer = client.post("/v1/recognize", files=files)
        assert answer.status_code == 200
        body = answer.json()
        assert body["model"] == "rings" and len(body["version"]) == 12
        assert [r["text"] for r in body["results"]] == expected
        assert [r["name"] for r in body["results"]] == [p.name for p in images[:3]]
        first = body["results"][0]
        assert len(first["char_confidences"]) == len(first["text"])
        encoded = base64.b64encode(images[0].read_bytes()).decode()
        by_json = client.post("/v1/recognize", json={"image": "data:image/png;base64,"
                                                     + encoded, "model": "torch"}).json()
        assert by_json["model"] == "torch" and by_json["results"][0]["text"] == expected[0]
        by_query = client.post("/v1/recognize?model=torch", json={"images": [encoded]}).json()
        assert by_query["model"] == "torch"


def test_models_health_and_openapi(onnx_model, trained_model):
    with _client(onnx_model, trained_model) as client:
        models = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["default"], m["format"]) for m in models] == [
            ("rings", True, "onnx"), ("torch", False, "safetensors")]
        assert models[0]["family"] == "crnn" and models[0]["reads_order"] is True
        assert client.get("/healthz").json()["status"] == "ok"
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/recognize", "/v1/models", "/healthz"} <= set(paths)
        assert "captchalab" in client.get("/").text


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


def test_bad_requests_get_json_4xx_and_the_server_keeps_serving(onnx_model, trained_model,
                                                                images):
    limits = Limits(max_image_bytes=50_000, max_request_bytes=200_000, max_pixels=100_000,
                    max_batch=4)
    good = images[0].read_bytes()
    cases = [
        ({"files": [("file", ("a.png", b"", "image/png"))]}, 400, "a.png: empty file"),
        ({"files": [("file", ("t.png", b"hello", "image/png"))]}, 400, "t.png: not an image"),
        ({"files": [("file", ("big.png", _png(1000, 1000), "image/png"))]}, 413, "pixels"),
        ({"files": [("file", ("f.png", good, "image/png"))] * 5}, 413, "limit is 4 per request"),
        ({"files": [("file", ("f.png", good, "image/png"))], "data": {"model": "nope"}}, 404,
         "unknown model 'nope'"),
        ({"json": {"images": ["%%%"]}}, 400, "invalid base64"),
        ({"json": {"images": []}}, 400, "no image in the request"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
         "invalid JSON body"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type":
                                                     "multipart/form-data; boundary=x"}}, 400,
         None),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
        ({"content": b"0" * 300_000, "headers": {"content-type": "application/json"}}, 413,
         "over the limit"),
    ]
    with _client(onnx_model, trained_model, limits) as client:
        for request, status, message in cases:
            answer = client.post("/v1/recognize", **request)
            assert answer.status_code == status, (request, answer.text)
            error = answer.json()["error"]
            assert "\n" not in error
            if message:
                assert message in error
        still = client.post("/v1/recognize", files=[("file", ("g.png", good, "image/png"))])
        assert still.status_code == 200


def test_concurrent_requests_are_batched_together(onnx_model, images):
    served = ServedModel.load(onnx_model, "rings", Limits(batch_wait=0.01))
    app = create_app([served])
    expected = [p.text for p in served.recognizer.predict(images)]

    async def run() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(*[
                client.post("/v1/recognize", files=[("file", (p.name, p.read_bytes()))])
                for p in images * 4])
        return [a.json()["results"][0]["text"] for a in answers]

    texts = asyncio.run(run())
    assert texts == expected * 4
    assert served.batcher.images == 32
    assert served.batcher.batches < 32  # shared forward passes


def test_label_queue_orders_by_confidence_and_never_overwrites(onnx_model, images, tmp_path):
    source = tmp_path / "unlabelled"
    source.mkdir()
    for i, path in enumerate(images[:4]):
        (source / f"u{i}.png").write_bytes(path.read_bytes())
    (source / "broken.png").write_bytes(b"nope")
    out = tmp_path / "labelled"
    queue = LabelQueue(Recognizer.load(onnx_model), source, out)
    state = queue.state()
    confidences = [item["confidence"] for item in state["items"]]
    assert confidences == sorted(confidences) and state["total"] == 4
    assert state["unreadable"] == ["broken.png"]
    first = queue.save("u0.png", "123456")
    second = queue.save("u1.png", " 123456 ")
    assert (first.name, second.name) == ("123456.png", "123456_1.png")
    assert first.read_bytes() == (source / "u0.png").read_bytes()
    assert queue.progress() == {"labelled": 2, "total": 4}
    assert queue.undo("123456_1.png") == "u1.png" and not second.exists()
    with pytest.raises(LookupError):
        queue.undo("123456_1.png")
    with pytest.raises(LookupError):
        queue.save("../etc/passwd", "1")
    for bad in ("", "a/b", "x_12", ".hidden", "a" * 65):
        with pytest.raises(ValueError):
            check_label(bad)


def test_concurrent_saves_of_one_label_keep_every_file(tmp_path):
    names: list[str] = []

    def save(i: int) -> None:
        names.append(save_without_overwrite(bytes([i]) * 10, tmp_path, "abc", ".png").name)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 12
    contents = {p.read_bytes() for p in tmp_path.glob("abc*.png")}
    assert contents == {bytes([i]) * 10 for i in range(12)}
    assert not list(tmp_path.glob(".label-*"))  # no temporary left behind


def test_label_api_over_http(onnx_model, trained_model, images, tmp_path):
    source = tmp_path / "u"
    source.mkdir()
    (source / "a.png").write_bytes(images[0].read_bytes())
    labels = LabelQueue(Recognizer.load(onnx_model), source, tmp_path / "out")
    with _client(onnx_model, trained_model, labels=labels) as client:
        assert "Label captchas" in client.get("/label").text
        assert client.get("/v1/label/image/a.png").content == images[0].read_bytes()
        assert client.get("/v1/label/image/..%2Fx.png").status_code == 404
        saved = client.post("/v1/label", json={"file": "a.png", "label": "654321"}).json()
        assert saved == {"saved": "654321.png", "labelled": 1, "total": 1}
        assert client.get("/v1/label/queue").json()["items"] == []
        assert client.post("/v1/label", json={"file": "a.png", "label": ""}).status_code == 400
        assert client.post("/v1/label/undo", json={"saved": "654321.png"}).json()[
            "restored"] == "a.png"


def test_cli_serve_runs_and_refuses_bad_setups(onnx_model, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.onnx")]) == 1
    assert "missing.onnx: no such model file" in capsys.readouterr().err
    assert main(["serve", str(onnx_model), "--label-dir", str(tmp_path), "--labelled-dir",
                 str(tmp_path / "o"), "--workers", "2"]) == 1
    assert "--workers 1" in capsys.readouterr().err
    for workers in ("1", "2"):  # two workers go through the factory in each process
        with serving(f"{onnx_model}=r", "--workers", workers) as url, \
                urllib.request.urlopen(f"{url}/v1/models") as answer:
            assert json.loads(answer.read())["models"][0]["name"] == "r"


def test_refused_bodies_keep_their_status_on_every_endpoint(onnx_model, trained_model, images,
                                                            tmp_path):
    """A body over the limit, streamed without Content-Length, is a 413 on the endpoints
    whose body FastAPI parses too, not the 400 of an unparseable body."""
    source = tmp_path / "u"
    source.mkdir()
    (source / "a.png").write_bytes(images[0].read_bytes())
    labels = LabelQueue(Recognizer.load(onnx_model), source, tmp_path / "out")
    limits = Limits(max_request_bytes=1000)

    def chunks():
        yield b'{"file": "a.png", "label": "'
        for _ in range(20):
            yield b"1" * 100
        yield b'"}'

    with _client(onnx_model, trained_model, limits, labels) as client:
        for path in ("/v1/label", "/v1/label/undo", "/v1/recognize"):
            answer = client.post(path, content=chunks(),
                                 headers={"content-type": "application/json"})
            assert answer.status_code == 413, (path, answer.text)
            assert "over the limit of 1000 bytes" in answer.json()["error"]
        assert client.get("/healthz").status_code == 200
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # nothing saved from a refused body
