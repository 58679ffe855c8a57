"""Nothing lost, nothing stuck: broker outages, daemon restarts, the systemd watchdog."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from conftest import DaemonProcess, Recorder, fill_disk
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo import notify
from edgeemo.config import MQTTConfig, parse_config
from edgeemo.daemon import Daemon
from edgeemo.mqtt.publisher import Publisher
from edgeemo.mqtt.topics import Topics
from edgeemo.outbox import Outbox
from edgeemo.tools.devtools import free_port, make_demo_clip, mosquitto_path, wait_port


@pytest.fixture(scope="module")
def loop_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 6 s: a face passes through once per loop, so a looping camera yields two events per loop.
    return make_demo_clip(tmp_path_factory.mktemp("clip") / "loop.mp4", fps=15, seconds=6.0)


class Mosquitto:
    """A real Mosquitto that keeps sessions on disk, so it can be stopped and started again."""

    def __init__(self) -> None:
        exe = mosquitto_path()
        if not exe:
            pytest.skip("mosquitto is not installed (make test installs it with apt)")
        self.exe, self.port = exe, free_port()
        # Not under pytest's tmp_path: started as root, mosquitto drops to user mosquitto, who
        # must reach this folder to write its database.
        workdir = Path(tempfile.mkdtemp(prefix="edgeemo-mosq-"))
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
        )
        workdir.chmod(0o777)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        assert wait_port(self.port), "mosquitto did not start"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _config(path: Path, clip: Path, port: int) -> Path:
    path.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {port}, stats_interval_s: 2}}\n"
        f"cameras:\n  - name: loop\n    source: {clip}\n    loop: true\n"
    )
    return path


def _events(rec: Recorder) -> list[dict]:
    return [json.loads(p) for t, p, _ in rec.find(lambda t, _p: t.endswith("/loop/event"))]


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_broker_outage_and_daemon_restart_lose_no_event(tmp_path: Path, daemon, loop_clip: Path) -> None:
    broker = Mosquitto()
    broker.start()
    rec = Recorder(broker.port, persistent=True)
    cfg = _config(tmp_path / "edgeemo.yaml", loop_clip, broker.port)
    try:
        a: DaemonProcess = daemon("--config", str(cfg))
        _wait(lambda: len(_events(rec)) >= 2, 40, "the first events")

        broker.stop()  # the broker goes away; the daemon keeps seeing faces
        down_at = time.time()
        time.sleep(8)
        assert a.proc.poll() is None
        assert a.stop() == 0  # and is restarted while the broker is still down
        assert "kept in" in a.log and "for the next start" in a.log
        up_at = time.time()

        broker.start()
        b = daemon("--config", str(cfg))
        _wait(lambda: any(e["ts"] > up_at + 3 for e in _events(rec)), 40, "events from the restarted daemon")
        time.sleep(1)
        assert b.stop() == 0
        time.sleep(0.5)
    finally:
        rec.close()
        broker.remove()

    events = _events(rec)
    seqs = [e["seq"] for e in events]
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), f"gap in seq: {sorted(seqs)}"
    during = [e for e in events if down_at <= e["ts"] <= up_at]
    assert during, "no event from the outage reached the subscriber"
    dupes = [s for s, n in Counter(seqs).items() if n > 1]
    assert len(dupes) <= 5, f"too many duplicates: {dupes}"
    ids = Counter(e["id"] for e in events)
    assert all(ids[e["id"]] == Counter(seqs)[e["seq"]] for e in events)  # a duplicate is the same event
    assert "Traceback" not in a.log + b.log


def _notifications(sock: socket.socket, seconds: float) -> list[str]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            out.append(sock.recv(4096).decode())
    return out


def test_notify_socket_ready_status_watchdog_and_a_frozen_camera(
    tmp_path: Path, models_dir: Path, broker: int, loop_clip: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # ping every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cfg = parse_config(
        {
            "mqtt": {"host": "127.0.0.1", "port": broker},
            "cameras": [{"name": "loop", "source": str(loop_clip), "loop": True}],
            "state_dir": str(tmp_path / "state"),
            "models_dir": str(models_dir),
        },
        "test",
    )
    d = Daemon(cfg)
    d.health.stuck_after_s = 2
    runner = threading.Thread(target=d.run, kwargs={"install_signals": False})
    gate = threading.Event()  # to freeze the camera loop inside inference, as a hung model would
    runner.start()
    try:
        first = _notifications(sock, 3.0)
        assert first[0].startswith("READY=1"), first
        assert any(m.startswith("STATUS=") and "loop" in m and "fps" in m for m in first), first
        assert first.count("WATCHDOG=1") >= 3

        detector = d.cameras[0].loop.analyzer.models.detector
        detect = detector.detect
        frozen_detect = lambda img, *rest: (gate.wait(), detect(img, *rest))[1]  # noqa: E731
        monkeypatch.setattr(detector, "detect", frozen_detect)
        _notifications(sock, 3.0)  # the loop is now stuck; give it STUCK_AFTER_S to count as hung
        frozen = _notifications(sock, 2.0)
        assert "WATCHDOG=1" not in frozen, frozen
        assert any(
            "camera loop made no progress for 2 s; not pinging the watchdog" in r.getMessage()
            for r in caplog.records
        )

        gate.set()  # it recovers: pings resume
        assert "WATCHDOG=1" in _notifications(sock, 2.0)
    finally:
        gate.set()
        d.request_stop()
        runner.join(15)
    assert not runner.is_alive()
    assert "STOPPING=1" in _notifications(sock, 0.5)


def test_notify_without_systemd_python_sends_the_datagram_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n.sock"))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.setitem(sys.modules, "systemd", None)  # as if systemd-python were not installed
    assert notify.notify("READY=1\nSTATUS=test")
    assert sock.recv(100) == b"READY=1\nSTATUS=test"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify.notify("WATCHDOG=1")  # not under systemd: a no-op


def test_after_a_long_outage_online_comes_first_and_only_the_latest_state(tmp_path: Path) -> None:
    """Issues 17.2 and 16.4 on a real broker and real paho, with a small paho queue: during the
    outage states pile up; on return, `online` must be retained again and each state topic
    must get its latest value only."""
    broker = Mosquitto()
    broker.start()
    cfg = MQTTConfig(host="127.0.0.1", port=broker.port, max_queued_messages=20, discovery=False)
    topics = Topics("edgeemo/dev1")
    pub = Publisher(cfg, topics, "edgeemo-dev1", None, list, Outbox(tmp_path / "o.sqlite3"))
    pub.start()
    rec = None
    try:
        assert pub.wait_connected(10)
        pub.state("porch", {"faces": 0, "n": -1})
        time.sleep(0.5)
        broker.stop()
        for f in broker.workdir.glob("*.db"):  # the broker comes back without its retained data
            f.unlink()
        _wait(lambda: not pub.is_connected(), 10, "the publisher to see the outage")
        for i in range(200):  # faces come and go while the broker is away
            pub.state("porch", {"faces": i % 2, "n": i})
            pub.camera_status("porch", i % 2 == 0)
        pub.event("porch", {"type": "face_entered", "id": "x"})
        broker.start()
        back = time.monotonic()
        rec = Recorder(broker.port)
        rec.wait_for(lambda t, p: t == topics.availability and p == "online", timeout=15)
        assert time.monotonic() - back < 15
        rec.wait_for(lambda t, _p: t == topics.event("porch"), timeout=15)
        time.sleep(1)
        states = [json.loads(p)["n"] for t, p, _ in rec.messages if t == topics.state("porch")]
        assert states == [199], states  # before: online never came; stale states replayed
        assert [p for t, p, _ in rec.messages if t == topics.status("porch")] == ["offline"]
    finally:
        pub.stop(timeout=0.5)
        if rec:
            rec.close()
        broker.remove()


def test_a_full_state_disk_does_not_stop_delivery(
    tmp_path: Path, daemon, loop_clip: Path, small_disk: Path, recorder: Recorder, broker: int
) -> None:
    """Issue 17.1: the state dir on a 1 MB tmpfs that fills up while the broker is healthy."""
    cfg = _config(tmp_path / "edgeemo.yaml", loop_clip, broker)
    d = daemon("--config", str(cfg), "--state-dir", str(small_disk / "state"))
    _wait(lambda: len(_events(recorder)) >= 2, 40, "the first events")
    filler = fill_disk(small_disk, leave=0)
    full_at = time.time()
    time.sleep(14)  # before: the delivery thread died at the first ack; nothing more arrived
    during = [e for e in _events(recorder) if e["ts"] > full_at]
    assert during, "no event was delivered while the state disk was full"
    filler.unlink()  # space returns: back to the disk
    _wait(lambda: "takes writes again" in d.log, 15, "the outbox to use the disk again")
    n = len(_events(recorder))
    _wait(lambda: len(_events(recorder)) > n, 20, "events after the disk recovered")
    assert d.proc.poll() is None
    assert d.stop() == 0
    seqs = sorted({e["seq"] for e in _events(recorder)})
    assert seqs == list(range(1, seqs[-1] + 1)), f"gap in seq: {seqs}"
    assert d.log.count("refuses writes") == 1, d.log  # once, not per event
    assert "Traceback" not in d.log and "Exception in thread" not in d.log and "not stored" not in d.log


@pytest.mark.parametrize("systemd_python", [True, False])
def test_a_dead_notify_socket_is_logged_once_and_never_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, systemd_python: bool
) -> None:
    """Issue 17.5: with systemd-python, its notify raised out of the main loop (exit 134)."""
    if systemd_python:
        pytest.importorskip("systemd.daemon", reason="systemd-python is not installed")
    else:
        monkeypatch.setitem(sys.modules, "systemd", None)
    monkeypatch.setattr(notify, "_warned", set())
    for addr in (str(tmp_path / "gone.sock"), "@edgeemo-nobody-listens"):
        monkeypatch.setenv("NOTIFY_SOCKET", addr)
        with caplog.at_level(logging.WARNING):
            assert notify.notify("READY=1") is False
            assert notify.notify("WATCHDOG=1") is False
    lines = [r.getMessage() for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(lines) == 2, lines  # once per cause, not per call


def test_the_daemon_runs_on_with_a_dead_notify_socket(
    tmp_path: Path, daemon, loop_clip: Path, recorder: Recorder, broker: int
) -> None:
    cfg = _config(tmp_path / "edgeemo.yaml", loop_clip, broker)
    d = daemon(
        "--config", str(cfg), env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "2000000"}
    )
    _wait(lambda: len(_events(recorder)) >= 2, 40, "events")
    assert d.proc.poll() is None, d.log
    assert d.stop() == 0
    assert d.log.count("cannot notify systemd") == 1 and "Traceback" not in d.log


def test_two_appliances_with_one_device_id_are_told_why(
    tmp_path: Path, daemon, loop_clip: Path, recorder: Recorder, broker: int
) -> None:
    """Issue 17.6: before, they kicked each other off 40 times in 40 s and the log said nothing."""
    cfg = _config(tmp_path / "edgeemo.yaml", loop_clip, broker)
    cfg.write_text(cfg.read_text() + "device: {id: twin}\n")  # as two clones of one SD card
    a = daemon("--config", str(cfg), "--state-dir", str(tmp_path / "a"))
    b = daemon("--config", str(cfg), "--state-dir", str(tmp_path / "b"))
    _wait(lambda: "another edgeemo" in a.log + b.log, 40, "the clash to be named")
    assert a.stop() == 0 and b.stop() == 0
    for d in (a, b):
        assert d.log.count("another edgeemo") <= 1 and "Traceback" not in d.log
    assert "machine-id" in a.log + b.log


def test_a_damaged_outbox_is_set_aside_and_the_daemon_runs_on(
    tmp_path: Path, daemon, loop_clip: Path, recorder: Recorder, broker: int
) -> None:
    """Issue 17.4: before, a traceback and exit 1 on every start (systemd restarting it forever)."""
    cfg = _config(tmp_path / "edgeemo.yaml", loop_clip, broker)
    a = daemon("--config", str(cfg))
    _wait(lambda: len(_events(recorder)) >= 2, 40, "the first events")
    assert a.stop() == 0
    last = max(e["seq"] for e in _events(recorder))
    outbox = tmp_path / "state" / "outbox.sqlite3"
    raw = bytearray(outbox.read_bytes())
    raw[4096:8192] = b"\xa5" * 4096  # garbage over a data page
    outbox.write_bytes(bytes(raw))
    b = daemon("--config", str(cfg))
    _wait(lambda: any(e["seq"] > last for e in _events(recorder)), 40, "events after the damage")
    assert b.proc.poll() is None
    assert b.stop() == 0
    new = sorted(e["seq"] for e in _events(recorder) if e["seq"] > last)
    assert new[0] == last + 1, new  # seq goes on (consumers de-duplicate by it)
    assert b.log.count("is damaged") == 1 and "Traceback" not in b.log
    assert list((tmp_path / "state").glob("outbox.sqlite3.damaged-*"))  # kept for inspection


class SlowHomeAssistant:
    """Subscribes to an event entity's topic `delay` seconds after its discovery config arrives,
    as Home Assistant does (0.3-1 s, measured with HA 2025.4)."""

    def __init__(self, port: int, delay: float) -> None:
        self.events: list[dict] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("homeassistant/#", qos=1)
        self.client.loop_start()
        self.delay = delay

    def _on_message(self, c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if msg.topic.startswith("homeassistant/event/") and msg.payload:
            topic = json.loads(msg.payload)["state_topic"]
            threading.Timer(self.delay, lambda: c.subscribe(topic, qos=1)).start()
        elif msg.topic.endswith("/event"):
            self.events.append(json.loads(msg.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_the_first_face_entered_after_discovery_reaches_home_assistant(
    tmp_path: Path, daemon, astronaut_png: Path, broker: int
) -> None:
    """Issue 16.6: a face in view at start; before, its face_entered went out ~0.5 s after
    discovery and before HA had subscribed to the new camera's event topic."""
    ha = SlowHomeAssistant(broker, delay=1.0)
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker}}}\n"
        f"cameras: [{{name: door, source: {astronaut_png}, loop: true}}]\n"
    )
    try:
        d = daemon("--config", str(cfg))
        _wait(lambda: ha.events, 30, "an event at Home Assistant")
        assert d.stop() == 0
    finally:
        ha.close()
    first = ha.events[0]
    assert first["event_type"] == "face_entered" and first["seq"] == 1, ha.events
