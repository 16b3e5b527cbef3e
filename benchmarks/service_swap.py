"""Hot reload under load: 10 model swaps during a wrk run of single-image requests.

Starts `captchalab serve A.onnx=live`, runs wrk (one thread) for `--seconds`, and swaps the
model between A and B every `--seconds / (swaps + 1)` seconds through
`POST /v1/models/live/reload`. A and B read some images differently, so every answer is
checked: its reading must be the one of the model its `version` names ("wrong-version"
otherwise). Reports requests/s, p50/p99 (the whole run, and the windows of two seconds
around each swap), errors, and wrong-version answers.

    python benchmarks/service_swap.py --models A.onnx B.onnx \\
        --data ../shared/datasets/captcha_v2/images --seconds 60 --swaps 10
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import free_port, parse_wrk  # noqa: E402

from captchalab import Recognizer  # noqa: E402

LUA = """
files = {%s}
expected = %s
counter, checked, wrong, seen = 0, 0, 0, {}
threads = {}
setup = function(thread) table.insert(threads, thread) end
boundary = "captchalabswap"
request = function()
  counter = counter + 1
  local index = (counter %% #files) + 1
  local body = "--" .. boundary .. "\\r\\nContent-Disposition: form-data; name=\\"file\\"; " ..
    "filename=\\"img" .. index .. "\\"\\r\\nContent-Type: image/png\\r\\n\\r\\n" .. files[index] ..
    "\\r\\n--" .. boundary .. "--\\r\\n"
  return wrk.format("POST", "/v1/recognize",
    {["Content-Type"] = "multipart/form-data; boundary=" .. boundary}, body)
end
response = function(status, headers, body)
  if status ~= 200 then return end
  local version = string.match(body, '"version":"(%%w+)"')
  local name = string.match(body, '"name":"img(%%d+)"')
  local text = string.match(body, '"text":"([^"]*)"')
  checked = checked + 1
  if not expected[version] or expected[version][tonumber(name)] ~= text then
    wrong = wrong + 1
  end
  if version then seen[version] = 1 end
  versions = 0
  for _ in pairs(seen) do versions = versions + 1 end
end
-- done() runs in wrk's main Lua state: the counts live in each thread's state
done = function(summary, latency, requests)
  local all_checked, all_wrong, most_versions = 0, 0, 0
  for _, thread in ipairs(threads) do
    all_checked = all_checked + (thread:get("checked") or 0)
    all_wrong = all_wrong + (thread:get("wrong") or 0)
    most_versions = math.max(most_versions, thread:get("versions") or 0)
  end
  io.write(string.format("CHECKED %%d WRONG %%d VERSIONS %%d\\n", all_checked, all_wrong,
                         most_versions))
end
"""


def percentile(values: list[float], level: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * level / 100))], 2)


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def expected_readings(models: list[Path], files: list[Path]) -> dict[str, list[str]]:
    """Each model's version (as the service names it) and its reading of each file."""
    import hashlib

    table = {}
    for path in models:
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        table[version] = [p.text for p in Recognizer.load(path).predict(files)]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs=2, required=True, metavar=("A", "B"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_service_swap.json"))
    args = parser.parse_args()
    files = sorted(p for p in args.data.iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.images]
    table = expected_readings(args.models, files)
    differing = sum(a != b for a, b in zip(*table.values()))
    print(f"the two models read {differing} of {len(files)} images differently", flush=True)
    lua_expected = "{" + ", ".join(
        f'["{version}"] = {{' + ", ".join(json.dumps(t) for t in texts) + "}"
        for version, texts in table.items()) + "}"
    live = Path(tempfile.mkdtemp(prefix="captchalab-swap-"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "captchalab.cli", "serve",
                               f"{args.models[0]}=live", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.2)
    script = live / "swap.lua"
    script.write_text(LUA % (", ".join(lua_string(p.read_bytes()) for p in files),
                             lua_expected))
    swaps: list[dict] = []

    def swapper() -> None:
        interval = args.seconds / (args.swaps + 1)
        for i in range(args.swaps):
            time.sleep(interval)
            target = args.models[(i + 1) % 2]
            started = time.monotonic()
            request = urllib.request.Request(
                f"{url}/v1/models/live/reload", json.dumps({"path": str(target)}).encode(),
                {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                body = json.loads(answer.read())
            swaps.append({"at_s": round(started - begun, 2), "to": body["version"],
                          "took_s": round(time.monotonic() - started, 3)})

    probes: list[tuple[float, float]] = []  # (when, latency) of a request every 20 ms
    body = json.dumps({"image": base64.b64encode(files[0].read_bytes())
                       .decode()}).encode()

    def probe() -> None:
        while time.monotonic() - begun < args.seconds:
            started = time.monotonic()
            request = urllib.request.Request(f"{url}/v1/recognize", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
            probes.append((started - begun, time.monotonic() - started))
            time.sleep(0.02)

    begun = time.monotonic()
    thread = threading.Thread(target=swapper)
    thread.start()
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    run = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s",
                          "--latency", "-s", str(script), url], capture_output=True, text=True)
    thread.join()
    prober.join(timeout=35)
    server.terminate()
    server.wait(timeout=30)
    result = parse_wrk(run.stdout)
    moments = [swap["at_s"] for swap in swaps]
    near = [latency for when, latency in probes if any(abs(when - m) <= 1.0 for m in moments)]
    far = [latency for when, latency in probes if all(abs(when - m) > 1.0 for m in moments)]
    checked, wrong, versions = (int(v) for v in
                                run.stdout.split("CHECKED ")[1].split()[0:5:2])
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "connections": args.connections, "seconds": args.seconds,
              "images": len(files), "differing_readings": differing,
              **result, "answers_checked": checked, "wrong_version_answers": wrong,
              "versions_seen": versions, "swaps": swaps,
              "probe_p99_ms_near_swaps": percentile(near, 99),
              "probe_p99_ms_elsewhere": percentile(far, 99), "probes": len(probes)}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
