"""Shared fixtures: real model files, a real Mosquitto broker, a recorder of MQTT traffic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo.modelstore import default_models_dir, fetch
from edgeemo.tools.devtools import astronaut_bgr, free_port, mosquitto_path, start_broker

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEEMO_SHARED", ROOT.parent / "shared"))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``edgeemo ARGS`` in a fresh process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "edgeemo", *args], capture_output=True, text=True, timeout=timeout
    )


def fresh_python(code: str) -> str:
    """stdout of ``code`` run in a new interpreter (what a module imports, seen from outside)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the team's shared data beside the checkout); not present here")
    return p


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = default_models_dir()
    # No-op when installed and verified; YuNet from the team's copy (no internet here).
    fetch(d, cache_dir=ROOT / ".cache" / "wheels", local_dirs=[SHARED / "models" / "yunet"])
    return d


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("media") / "astronaut.png"
    cv2.imwrite(str(p), astronaut_bgr())
    return p


@pytest.fixture
def broker() -> Iterator[int]:
    """A real Mosquitto on 127.0.0.1; yields its port."""
    if not mosquitto_path():
        pytest.skip("mosquitto is not installed (make test installs it with apt)")
    port = free_port()
    proc = start_broker(port)
    yield port
    proc.terminate()
    proc.wait(5)


class ListSink:
    """Keeps a camera loop's events and states in memory (the tests' stand-in for the publisher)."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.states: list[dict] = []
        self.statuses: list[bool] = []
        self.order: list[str] = []  # "event:<type>", "state:<faces>", "status:<online>" as sent

    def event(self, camera: str, event: dict) -> None:
        self.events.append(event)
        self.order.append(f"event:{event['event_type']}")

    def state(self, camera: str, state: dict) -> None:
        self.states.append(state)
        self.order.append(f"state:{state['faces']}")

    def camera_status(self, camera: str, online: bool) -> None:
        self.statuses.append(online)
        self.order.append(f"status:{'online' if online else 'offline'}")


class Recorder:
    """Subscribes to everything and keeps (topic, payload, retain) in arrival order."""

    def __init__(
        self,
        port: int,
        topics: tuple[str, ...] = ("#",),
        auth: tuple[str, str] | None = None,
        persistent: bool = False,
    ) -> None:
        """``persistent``: a durable session, so the broker queues what arrives while we are away."""
        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"recorder-{time.monotonic_ns()}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_message = self._on_message
        if auth:
            self.client.username_pw_set(*auth)
        ready = threading.Event()

        def on_connect(c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
            assert not reason.is_failure, f"recorder refused by the broker: {reason}"
            c.subscribe([(t, 1) for t in topics])
            ready.set()

        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(5), "recorder could not connect to the broker"
        time.sleep(0.2)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(errors="replace"), bool(msg.retain)))

    def find(self, pred: Callable[[str, str], bool]) -> list[tuple[str, str, bool]]:
        with self._lock:
            return [m for m in self.messages if pred(m[0], m[1])]

    def wait_for(self, pred: Callable[[str, str], bool], timeout: float = 30.0, count: int = 1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(pred)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        topics = sorted({m[0] for m in self.messages})
        raise AssertionError(f"no matching MQTT message within {timeout} s; topics seen: {topics}")

    def json_on(self, suffix: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in self.find(lambda t, _p: t.endswith(suffix))]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def ending_order(rec: Recorder, camera: str) -> list[str]:
    """What HA received for the camera, from its face_left on: kinds in arrival order."""
    out = []
    for topic, payload, _ in list(rec.messages):
        if topic.endswith(f"/{camera}/event"):
            out.append(json.loads(payload)["event_type"])
        elif topic.endswith(f"/{camera}/state"):
            out.append(f"faces {json.loads(payload)['faces']}")
        elif topic.endswith(f"/{camera}/status"):
            out.append(payload)
    return out[out.index("face_left") :] if "face_left" in out else out


@pytest.fixture
def recorder(broker: int) -> Iterator[Recorder]:
    r = Recorder(broker)
    yield r
    r.close()


class DaemonProcess:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeemo", *args], stdout=self._log, stderr=subprocess.STDOUT, env=full_env
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def daemon(tmp_path: Path, models_dir: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        d = DaemonProcess(
            ["run", "--state-dir", str(tmp_path / "state"), "--models-dir", str(models_dir), *args],
            tmp_path / f"daemon{len(started)}.log",
            env,
        )
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB tmpfs (needs root, as make test runs), for the state directory."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_disk(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as f:
        while shutil.disk_usage(disk).free > leave:
            f.write(b"\0" * 4096)
            f.flush()
    return filler
