"""Helpers for the demo and the tests: a clip with a real face and a local broker.

Not used by the daemon itself. The face is scikit-image's ``astronaut`` (public domain),
so the demo and most tests need nothing but a fresh clone.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def astronaut_bgr() -> np.ndarray:
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("the demo needs scikit-image (pip install -e '.[dev]')") from None
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def empty_room(w: int = 640, h: int = 480) -> np.ndarray:
    """A plain wall with a horizontal colour gradient: the background of the test clips."""
    room = np.full((h, w, 3), 90, np.uint8)
    room[:, :, 1] = np.linspace(60, 140, w, dtype=np.uint8)[None, :]
    return room


def demo_frames(fps: int = 15, seconds: float = 10.0, size: tuple[int, int] = (640, 480)):
    """Empty room → a smiling face drifts in view → empty room again (enter and leave events)."""
    w, h = size
    face = cv2.resize(astronaut_bgr(), (h, h), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    room = empty_room(w, h)
    n = int(fps * seconds)
    for i in range(n):
        t = i / n
        frame = room.copy()
        if 0.2 <= t < 0.8:
            x = int((w - h) * (t - 0.2) / 0.6)  # slow pan, as a person walking past
            frame[:, x : x + h] = face
        noise = rng.integers(-4, 5, frame.shape, dtype=np.int16)
        yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_demo_clip(path: Path, fps: int = 15, seconds: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in demo_frames(fps, seconds):
        writer.write(frame)
    writer.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def start_broker(port: int, extra_conf: str = "", anonymous: bool = True) -> subprocess.Popen:
    """A broker on 127.0.0.1:port: Mosquitto where installed, else the pure-Python amqtt."""
    exe = mosquitto_path()
    if exe:
        conf = Path(tempfile.mkdtemp(prefix="edgeemo-mosq-")) / "mosquitto.conf"
        anon = "true" if anonymous else "false"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous {anon}\npersistence false\n{extra_conf}")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        script = (
            "import asyncio, sys\n"
            "from amqtt.broker import Broker\n"
            "async def main():\n"
            "    b = Broker({'listeners': {'default': {'type': 'tcp', "
            f"'bind': '127.0.0.1:{port}'}}}}, 'sys_interval': 0, "
            "'auth': {'allow-anonymous': True}})\n"
            "    await b.start()\n"
            "    await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    if not wait_port(port):
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"the MQTT broker did not start on port {port}: {err.strip()[-300:]}")
    return proc
