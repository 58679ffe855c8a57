#!/usr/bin/env python3
"""A short, bounded load run of the web face: ``/predict`` latency and what it costs the cameras.

Starts ``edgeemo run`` with two looping file cameras, a local Mosquitto (when installed) and the
web face on loopback; measures the cameras' frame rate for a while, then sends ``/predict``
requests with a 640x480 JPEG of a face from ``--clients`` threads for ``--seconds`` and measures
again. Prints one JSON object (latency median and p95, answers by status, camera fps before and
during).

    .venv/bin/python scripts/web_load.py --seconds 20 --clients 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import yaml

from edgeemo.modelstore import default_models_dir
from edgeemo.tools.devtools import (
    astronaut_bgr,
    free_port,
    make_demo_clip,
    mosquitto_path,
    start_broker,
    wait_port,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import DaemonProcess  # noqa: E402


def frames(base: str) -> dict[str, int]:
    with urllib.request.urlopen(base + "/api/cameras", timeout=10) as r:
        cams = json.load(r)["cameras"]
    return {name: c["frames"] for name, c in cams.items()}


def camera_fps(base: str, seconds: float) -> dict[str, float]:
    a, t0 = frames(base), time.monotonic()
    time.sleep(seconds)
    b, t1 = frames(base), time.monotonic()
    return {name: round((b[name] - a[name]) / (t1 - t0), 2) for name in a}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="how long /predict is kept busy")
    ap.add_argument("--clients", type=int, default=2, help="threads sending /predict back to back")
    ap.add_argument("--fps", type=float, default=5.0, help="each camera's detect_fps")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgeemo-load-"))
    still = tmp / "astronaut.png"
    cv2.imwrite(str(still), astronaut_bgr())
    clip = make_demo_clip(tmp / "hall.mp4", fps=10, seconds=6)
    frame = np.full((480, 640, 3), 70, np.uint8)
    frame[:, 80:560] = cv2.resize(astronaut_bgr(), (480, 480), interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()

    broker = None
    mqtt: dict = {"host": "127.0.0.1", "port": 1}
    if mosquitto_path():
        mqtt["port"] = free_port()
        broker = start_broker(mqtt["port"])
    port = free_port()
    cfg = {
        "mqtt": mqtt,
        "cameras": [
            {"name": "still", "source": str(still), "loop": True, "detect_fps": args.fps},
            {"name": "hall", "source": str(clip), "loop": True, "detect_fps": args.fps},
        ],
        "http": {"enabled": True, "port": port},
    }
    (tmp / "edgeemo.yaml").write_text(yaml.safe_dump(cfg))
    proc = DaemonProcess(
        ["run", "-c", str(tmp / "edgeemo.yaml"), "--state-dir", str(tmp / "state"),
         "--models-dir", str(default_models_dir())],
        tmp / "daemon.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_port(port, 60):
            print(proc.log[-2000:], file=sys.stderr)
            return 1
        time.sleep(4)  # models warm, both cameras running
        before = camera_fps(base, 8)
        latencies: list[float] = []
        codes: dict[int, int] = {}
        stop = time.monotonic() + args.seconds
        lock = threading.Lock()

        def client() -> None:
            while time.monotonic() < stop:
                req = urllib.request.Request(
                    base + "/predict", jpeg, {"Content-Type": "image/jpeg"}, method="POST"
                )
                t0 = time.perf_counter()
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        r.read()
                        code = r.status
                except urllib.error.HTTPError as e:
                    code = e.code
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == 200:
                        latencies.append(ms)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(min(2.0, args.seconds / 4))
        during = camera_fps(base, max(1.0, args.seconds - 4))
        for t in threads:
            t.join()
        lat = sorted(latencies)
        report = {
            "image": "640x480 JPEG, one face",
            "clients": args.clients,
            "seconds": args.seconds,
            "answers": {str(k): v for k, v in sorted(codes.items())},
            "predict_per_s": round(len(lat) / args.seconds, 1),
            "predict_ms_median": round(statistics.median(lat), 1) if lat else None,
            "predict_ms_p95": round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
            "camera_detect_fps": args.fps,
            "camera_fps_before": before,
            "camera_fps_during": during,
        }
        print(json.dumps(report, indent=2))
        return 0
    finally:
        proc.stop()
        if broker is not None:
            broker.terminate()


if __name__ == "__main__":
    sys.exit(main())
