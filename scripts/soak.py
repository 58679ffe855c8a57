"""Soak benchmark: the daemon on looping clips for N minutes; RSS over time, events, seq gaps.

Not a unit test: run `make soak` (default 10 minutes) and read the JSON it prints. A real
Mosquitto on loopback and a subscriber that checks every event's seq arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo.tools.devtools import free_port, make_demo_clip, start_broker


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """MiB from /proc/<pid>/status: VmRSS now, or VmHWM (the peak RSS so far)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upscaled(src: Path, dst: Path, w: int, h: int) -> Path:
    """The demo clip at another frame size (a 1080p camera's memory is what tiles bound)."""
    cap = cv2.VideoCapture(str(src))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.write(cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR))
    cap.release()
    out.release()
    return dst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--size", default="640x480", help="the clip's frame size, e.g. 1920x1080 (upscaled)")
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgeemo-soak-"))
    clip = make_demo_clip(work / "loop.mp4", fps=15, seconds=8.0)
    if a.size != "640x480":
        clip = upscaled(clip, work / f"loop_{a.size}.mp4", *(int(v) for v in a.size.split("x")))
    port = free_port()
    broker = start_broker(port)
    seqs: list[int] = []
    lock = threading.Lock()

    def on_message(_c, _u, msg) -> None:
        if msg.topic.endswith("/event"):
            with lock:
                seqs.append(json.loads(msg.payload)["seq"])

    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_connect = lambda c, *_: c.subscribe("edgeemo/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()

    cams = "".join(f"  - {{name: cam{i}, source: {clip}, loop: true}}\n" for i in range(a.cameras))
    cfg = work / "edgeemo.yaml"
    cfg.write_text(f"mqtt: {{host: 127.0.0.1, port: {port}}}\nstate_dir: {work / 'state'}\ncameras:\n{cams}")
    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeemo", "run", "--config", str(cfg)], stdout=log, stderr=log
    )
    samples = []
    hwm = 0.0
    startup: list[tuple[float, float]] = []  # (s, VmHWM MiB) each time the peak rose by > 2 MiB
    t0 = time.monotonic()
    try:
        # Start-up (models loading, every camera's first whole-frame scan) is where the peak
        # tends to be: watch it closely, so the report says when the peak was reached.
        while time.monotonic() - t0 < 15:
            peak = rss_mb(proc.pid, "VmHWM")
            if peak > hwm + 2:
                startup.append((round(time.monotonic() - t0, 1), round(peak, 1)))
                hwm = peak
            time.sleep(0.05)
        while time.monotonic() - t0 < a.minutes * 60:
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}; log: {work / 'daemon.log'}")
            samples.append((round(time.monotonic() - t0), round(rss_mb(proc.pid), 1), cpu_seconds(proc.pid)))
            hwm = rss_mb(proc.pid, "VmHWM")
            t, rss = samples[-1][:2]
            print(f"t={t:>4} s  RSS {rss:6.1f} MB  peak {hwm:6.1f} MB  events {len(seqs)}", flush=True)
            time.sleep(a.sample_s)
    finally:
        if proc.poll() is None:
            hwm = rss_mb(proc.pid, "VmHWM")
        proc.terminate()
        rc = proc.wait(20)
        sub.loop_stop()
        broker.terminate()
    with lock:
        got = sorted(set(seqs))
    missing = sorted(set(range(1, got[-1] + 1)) - set(got)) if got else []
    first, last = samples[0], samples[-1]
    report = {
        "minutes": round((time.monotonic() - t0) / 60, 1),
        "cameras": a.cameras,
        "rss_mb_start": first[1],
        "rss_mb_end": last[1],
        "rss_mb_max": max(s[1] for s in samples),
        "rss_mb_peak": round(hwm, 1),  # VmHWM: the peak, start-up included, between samples too
        "peak_rises_at_startup": startup,
        "cpu_percent": round(100 * (last[2] - first[2]) / max(1, last[0] - first[0]), 1),
        "events": len(seqs),
        "seq_missing": len(missing),
        "seq_duplicates": len(seqs) - len(got),
        "exit_code": rc,
        "log": str(work / "daemon.log"),
    }
    print(json.dumps(report))
    if "Traceback" in (work / "daemon.log").read_text(errors="replace"):
        print("soak: the daemon log has a traceback", file=sys.stderr)
        return 1
    shutil.rmtree(work / "state", ignore_errors=True)
    return 0 if rc == 0 and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
