"""Load test of `captchalab serve` on loopback: single-image requests from wrk.

Starts the server (one worker, the given model), waits for /healthz, then runs wrk with a
fixed number of connections for a fixed time; each request posts one captcha as JSON
base64, cycling through `--images` different files. Reports requests/s, p50/p90/p99
latency and errors (non-2xx, socket errors) per connection count.

With `--abuse`, bad clients run alongside wrk for the whole time: a thread sends oversized,
malformed, non-image, invalid-base64 and unknown-model requests one after another, and
slow clients trickle their headers or bodies a byte a second; each must get its JSON 4xx.

    python benchmarks/service_load.py --model benchmarks/runs/runtime/model.onnx \
        --data ../shared/datasets/captcha_v2/images --seconds 60 --connections 4,8,16
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

LUA = """
bodies = {%s}
counter = 0
request = function()
  counter = counter + 1
  local body = bodies[(counter %% #bodies) + 1]
  return wrk.format("POST", "/v1/recognize", {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict:
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
              "requests": int(re.search(r"(\d+) requests in", output)[1])}
    for level in ("50", "90", "99"):
        result[f"p{level}_ms"] = milliseconds(re.search(rf"\s{level}%\s+(\S+)", output)[1])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(non_2xx[1]) if non_2xx else 0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        output)
    result["socket_errors"] = sum(map(int, sockets.groups())) if sockets else 0
    return result


def http_post(body: bytes, content_type: str, length: int | None = None) -> bytes:
    """A raw POST /v1/recognize; ``length`` may declare more than is sent."""
    return (f"POST /v1/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {len(body) if length is None else length}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def bad_requests(image: bytes) -> list[tuple[str, bytes, int]]:
    """(what, raw request, expected status) of each kind of bad request."""
    encoded = base64.b64encode(image).decode()
    return [
        ("oversized body", http_post(b"{", "application/json", length=17 * 1024 * 1024), 413),
        ("malformed multipart", http_post(b"--nope\r\n", "multipart/form-data; boundary=xyz"),
         400),
        ("not an image", http_post(json.dumps({"image": base64.b64encode(b"text" * 50)
                                               .decode()}).encode(), "application/json"), 400),
        ("invalid base64", http_post(b'{"image": "%%%not base64"}', "application/json"), 400),
        ("unknown model", http_post(json.dumps({"image": encoded, "model": "nope"}).encode(),
                                    "application/json"), 404),
        ("invalid JSON", http_post(b'{"image": ', "application/json"), 422),
        ("wrong content type", http_post(b"hello", "text/plain"), 415),
    ]


def exchange(port: int, request: bytes, trickle_from: int | None = None,
             stop: float = float("inf")) -> tuple[int, bytes]:
    """Send ``request`` (from byte ``trickle_from`` on, one byte a second) and read the
    answer until the server closes; its status and body (0 when it never answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        split = len(request) if trickle_from is None else trickle_from
        sock.sendall(request[:split])
        sent, answer = split, b""
        while time.monotonic() < stop:
            if sent < len(request):
                sock.sendall(request[sent:sent + 1])
                sent += 1
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        if not answer:
            return 0, b""
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), body


def abuse(port: int, image: bytes, stop: float, tally: dict) -> None:
    """Bad requests one after another, and slow clients, until ``stop``; counts in ``tally``."""
    def count(what: str, status: int, body: bytes, expected: int) -> None:
        try:
            ok = status == expected and bool(json.loads(body).get("error"))
        except ValueError:
            ok = False
        key = f"{what}: {status}" + ("" if ok else " (unexpected)")
        tally[key] = tally.get(key, 0) + 1

    def slow_loop(what: str, request: bytes, trickle_from: int) -> None:
        while time.monotonic() < stop - 12:  # leave time for the last deadline to pass
            count(what, *exchange(port, request, trickle_from, stop), 408)

    slow_body = http_post(b" " * 4000, "application/json")
    slow = [threading.Thread(target=slow_loop, args=args, daemon=True) for args in [
        ("slow headers", b"POST /v1/recognize HTTP/1.1\r\n" + b"X-Slow: 1\r\n" * 500, 0),
        ("slow body", slow_body, slow_body.index(b"\r\n\r\n") + 4)]]
    for thread in slow:
        thread.start()
    kinds = bad_requests(image)
    i = 0
    while time.monotonic() < stop:
        what, request, expected = kinds[i % len(kinds)]
        count(what, *exchange(port, request), expected)
        i += 1
    for thread in slow:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", default="4,8,16")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/service_load.json"))
    parser.add_argument("--serve-args", default="", help="extra arguments for serve")
    parser.add_argument("--abuse", action="store_true",
                        help="run bad and slow clients alongside the load")
    args = parser.parse_args()

    files = sorted(args.data.glob("*.png"))[: args.images]
    bodies = [json.dumps(json.dumps({"image": base64.b64encode(f.read_bytes()).decode()}))
              for f in files]
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(LUA % ", ".join(bodies))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "captchalab.cli", "serve", args.model,
                               "--port", str(port), *args.serve_args.split()],
                              stderr=subprocess.DEVNULL)
    rows = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/v1/recognize"
        subprocess.run(["wrk", "-t1", "-c4", "-d3s", "-s", str(script), url],  # warm up
                       capture_output=True, check=True)
        for connections in map(int, args.connections.split(",")):
            tally: dict[str, int] = {}
            abuser = threading.Thread(target=abuse, args=(
                port, files[0].read_bytes(), time.monotonic() + args.seconds, tally))
            if args.abuse:
                abuser.start()
            output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{args.seconds}s",
                                     "--latency", "-s", str(script), url], capture_output=True,
                                    text=True, check=True).stdout
            row = {"connections": connections, "seconds": args.seconds, **parse_wrk(output)}
            if args.abuse:
                abuser.join()
                row["abuse"] = tally
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as answer:
                    row["healthy_after"] = answer.status == 200
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "model": args.model, "images": len(files), "serve_args": args.serve_args,
              "abuse": args.abuse,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
