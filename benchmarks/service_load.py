"""Load test of `captchalab serve` on loopback: single-image requests from wrk.

Starts the server (one worker, the given model), waits for /healthz, then runs wrk with a
fixed number of connections for a fixed time; each request posts one captcha as JSON
base64, cycling through `--images` different files. Reports requests/s, p50/p90/p99
latency and errors (non-2xx, socket errors) per connection count.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", default="4,8,16")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/service_load.json"))
    parser.add_argument("--serve-args", default="", help="extra arguments for serve")
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
            output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{args.seconds}s",
                                     "--latency", "-s", str(script), url], capture_output=True,
                                    text=True, check=True).stdout
            row = {"connections": connections, "seconds": args.seconds, **parse_wrk(output)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "model": args.model, "images": len(files), "serve_args": args.serve_args,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
