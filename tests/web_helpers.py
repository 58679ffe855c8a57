"""A daemon with its web face on loopback, and plain HTTP requests to it (urllib: no client
library between the test and the server's bytes)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import yaml

from edgeemo.tools.devtools import (
    astronaut_bgr,
    free_port,
    make_demo_clip,
    mosquitto_path,
    start_broker,
    wait_port,
)
from tests.conftest import DaemonProcess


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@dataclass
class WebDaemon:
    proc: DaemonProcess
    base: str
    media: Path

    def get(self, path: str, **kw: object) -> Reply:
        return request(self.base + path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, body: bytes, content_type: str, **kw: object) -> Reply:
        headers = {"Content-Type": content_type, **kw.pop("headers", {})}  # type: ignore[dict-item]
        return request(self.base + path, "POST", body, headers, **kw)  # type: ignore[arg-type]

    def wait(self, pred, timeout: float = 60.0, what: str = "") -> dict:  # type: ignore[no-untyped-def]
        """Poll /api/cameras until ``pred(body)`` holds."""
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            r = self.get("/api/cameras", headers=self._auth)
            if r.status == 200:
                body = r.json()
                if pred(body):
                    return body
            time.sleep(0.3)
        raise AssertionError(
            f"timed out waiting for {what}; last /api/cameras: {body}\n{self.proc.log[-3000:]}"
        )

    _auth: dict[str, str] | None = None


def media(dir: Path) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dir / "astronaut.png"), astronaut_bgr())
    cv2.imwrite(str(dir / "astronaut.jpg"), astronaut_bgr(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    make_demo_clip(dir / "hall.mp4", fps=10, seconds=6)  # a face comes and goes: events keep coming
    return dir


def start_web_daemon(
    tmp: Path,
    models_dir: Path,
    broker_port: int,
    http: dict | None = None,
    env: dict[str, str] | None = None,
) -> WebDaemon:
    m = media(tmp / "media")
    port = free_port()
    cfg = {
        "mqtt": {"host": "127.0.0.1", "port": broker_port},
        "cameras": [
            {"name": "astro", "source": str(m / "astronaut.png"), "loop": True},
            {"name": "hall", "source": str(m / "hall.mp4"), "loop": True},
        ],
        "http": {"enabled": True, "host": "127.0.0.1", "port": port, **(http or {})},
    }
    conf = tmp / "edgeemo.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    proc = DaemonProcess(
        ["run", "-c", str(conf), "--state-dir", str(tmp / "state"), "--models-dir", str(models_dir)],
        tmp / "daemon.log",
        env,
    )
    if not wait_port(port, 60):
        proc.stop()
        raise AssertionError(f"the web face never listened on {port}:\n{proc.log[-3000:]}")
    return WebDaemon(proc, f"http://127.0.0.1:{port}", m)


@contextmanager
def web_daemon_on_a_broker(tmp: Path, models_dir: Path, http: dict | None = None) -> Iterator[WebDaemon]:
    """A real Mosquitto and the web daemon on it (skips without Mosquitto); the broker goes
    when the block ends, after whatever the block did with the daemon."""
    if not mosquitto_path():
        pytest.skip("mosquitto is not installed (make test installs it with apt)")
    port = free_port()
    broker = start_broker(port)
    try:
        yield start_web_daemon(tmp, models_dir, port, http)
    finally:
        broker.terminate()
        broker.wait(5)
