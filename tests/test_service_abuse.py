"""The service under abuse: generated requests from its OpenAPI schema, slow clients, and a
short load test with bad requests mixed in (the full-scale one is a benchmark)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import schemathesis
from conftest import serving
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from captchalab.service import Limits, ServedModel, create_app
from captchalab.service.labelling import LabelQueue

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(onnx_model, rings_test, tmp_path_factory):
    unlabelled = tmp_path_factory.mktemp("unlabelled")
    for source in sorted(rings_test.glob("*.png"))[:4]:
        shutil.copyfile(source, unlabelled / source.name)
    served = ServedModel.load(onnx_model, "rings")
    labels = LabelQueue(served.recognizer, unlabelled, tmp_path_factory.mktemp("labelled"))
    return schemathesis.openapi.from_asgi("/openapi.json", create_app([served], labels=labels))


OPERATIONS = [("POST", "/v1/recognize"), ("GET", "/v1/models"), ("GET", "/healthz"),
              ("GET", "/v1/label/queue"), ("GET", "/v1/label/image/{name}"),
              ("POST", "/v1/label"), ("POST", "/v1/label/undo"), ("GET", "/metrics"),
              ("POST", "/v1/models/{name}/reload")]
WITH_BODY = [(method, path) for method, path in OPERATIONS if method == "POST"]


def test_every_operation_is_fuzzed(api_schema):
    assert {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()} \
        == set(OPERATIONS)


def _fuzz(api_schema, method: str, path: str, mode: GenerationMode) -> None:
    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=api_schema[path][method].as_strategy(mode))
    def call(case) -> None:
        case.call_and_validate(checks=CHECKS)

    call()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_generated_requests_get_documented_answers(api_schema, method, path):
    """Requests generated from the schema: no 5xx, and each answer's status, content type
    and body are the ones the schema documents (a valid request may still carry a bad
    image, which is a documented 400)."""
    _fuzz(api_schema, method, path, GenerationMode.POSITIVE)


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
def test_invalid_generated_requests_get_documented_4xx(api_schema, method, path):
    """Bodies that break the schema (wrong types, missing fields, other content types)."""
    _fuzz(api_schema, method, path, GenerationMode.NEGATIVE)


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _answer(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _post_json(url: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/v1/recognize", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_slow_clients_get_408_and_do_not_hold_up_others(onnx_model, rings_test):
    image = base64.b64encode(sorted(rings_test.glob("*.png"))[0].read_bytes()).decode()
    with serving(str(onnx_model), "--client-timeout", "1.5") as url:
        trickle_headers, trickle_body, idle = _raw(url), _raw(url), _raw(url)
        trickle_headers.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\n")
        trickle_body.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 5000\r\n\r\n{\"image\": ")
        started = time.monotonic()
        status, body = _post_json(url, {"image": image}, timeout=5)  # others are served
        assert status == 200 and body["results"][0]["text"]
        assert time.monotonic() - started < 1.0
        for sock, what in ((trickle_headers, "headers"), (trickle_body, "body"),
                           (idle, "headers")):
            status, body = _answer(sock)  # reads until the server closes the connection
            assert status == 408 and what in body["error"]
        assert time.monotonic() - started < 10
        assert _post_json(url, {"image": image})[0] == 200


def test_short_load_with_bad_requests_mixed_in(onnx_model, rings_test):
    """Four clients post single images for a few seconds while a fifth sends bad requests:
    every good request is answered correctly, every bad one with its JSON 4xx."""
    from captchalab.runtime import Recognizer

    files = sorted(rings_test.glob("*.png"))[:20]
    expected = [p.text for p in Recognizer.load(onnx_model).predict(files)]
    bodies = [{"image": base64.b64encode(f.read_bytes()).decode()} for f in files]
    bad = [({"image": "not base64!"}, 400), ({"image": base64.b64encode(b"text").decode()}, 400),
           ({"image": bodies[0]["image"], "model": "nope"}, 404), ({"images": []}, 400),
           ({"images": [bodies[0]["image"]] * (Limits().max_batch + 1)}, 413)]
    latencies: list[float] = []
    failures: list[str] = []
    stop = time.monotonic() + 4.0

    def client(offset: int) -> None:
        i = offset
        # for 4 s, and at least 10 requests each (a stalled moment of a busy machine)
        while time.monotonic() < stop or i < offset + 10:
            started = time.monotonic()
            status, body = _post_json(url, bodies[i % len(bodies)])
            latencies.append(time.monotonic() - started)
            if status != 200 or body["results"][0]["text"] != expected[i % len(bodies)]:
                failures.append(f"good request {i}: {status} {body}")
            i += 1

    def abuser() -> None:
        i = 0
        while time.monotonic() < stop:
            body, status_expected = bad[i % len(bad)]
            status, answer = _post_json(url, body)
            if status != status_expected or not answer.get("error"):
                failures.append(f"bad request {i}: {status} {answer}")
            i += 1

    with serving(str(onnx_model)) as url:
        threads = [threading.Thread(target=client, args=(k * 5,)) for k in range(4)]
        threads.append(threading.Thread(target=abuser))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    latencies.sort()
    assert len(latencies) >= 40
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(f"\n{len(latencies)} good requests in 4 s or more, p50 {p50 * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms")


def test_connections_over_the_limit_get_503_until_others_close(onnx_model):
    with serving(str(onnx_model), "--max-connections", "3") as url:
        held = [_raw(url) for _ in range(3)]
        time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/healthz", timeout=10)
        assert refused.value.code == 503
        for sock in held:
            sock.close()
        time.sleep(0.2)
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:
            assert answer.status == 200
