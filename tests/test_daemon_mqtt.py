"""The daemon end to end against a real Mosquitto broker (and a real RTSP server)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from edgeemo.tools.devtools import free_port, make_demo_clip, mosquitto_path, start_broker, wait_port
from tests import ha_schema
from tests.conftest import DaemonProcess, Recorder, ending_order

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 8 s: empty room, the smiling astronaut passes through, empty room again.
    return make_demo_clip(tmp_path_factory.mktemp("clip") / "visit.mp4", fps=15, seconds=8.0)


def prefix_of(rec: Recorder) -> str:
    topic = rec.wait_for(lambda t, p: t.endswith("/availability") and p == "online")[0][0]
    return topic.rsplit("/", 1)[0]


def test_file_clip_publishes_discovery_state_events(
    recorder: Recorder, broker: int, daemon, clip: Path
) -> None:
    d: DaemonProcess = daemon("--source", str(clip), "--mqtt", f"mqtt://127.0.0.1:{broker}")
    prefix = prefix_of(recorder)
    assert prefix.startswith("edgeemo/")
    # The clip ends by itself; the daemon stops cleanly when all its sources have ended.
    assert d.proc.wait(40) == 0, d.log

    avail = recorder.find(lambda t, _p: t == f"{prefix}/availability")
    assert [p for _, p, _ in avail] == ["online", "offline"]
    assert all(retain is False for *_, retain in avail)  # live deliveries; retained on the broker

    configs = recorder.find(lambda t, _p: t.startswith("homeassistant/") and t.endswith("/config"))
    assert len(configs) >= 8
    for topic, payload, _ in configs:
        body = json.loads(payload)
        assert ha_schema.validate(topic, body) == [], body
    by_name = {json.loads(p)["name"]: json.loads(p) for t, p, _ in configs if "/device_automation/" not in t}
    triggers = [json.loads(p) for t, p, _ in configs if "/device_automation/" in t]
    assert sorted(t["type"] for t in triggers) == sorted(["face_entered", "emotion_changed", "face_left"])
    emo = by_name["Dominant emotion"]
    assert emo["device_class"] == "enum" and "happy" in emo["options"] and "none" in emo["options"]
    assert emo["device"]["via_device"] == by_name["Memory"]["device"]["identifiers"][0]
    assert by_name["Emotion event"]["event_types"] == ["face_entered", "emotion_changed", "face_left"]

    states = recorder.json_on("/visit/state")
    assert any(s["dominant_emotion"] == "happy" and s["faces"] == 1 for s in states)
    assert states[-1]["faces"] == 0 and states[-1]["dominant_emotion"] == "none"
    # Templates render to values HA accepts, from our real payloads.
    state_payload = next(p for t, p, _ in recorder.messages if t.endswith("/visit/state") and '"happy"' in p)
    assert ha_schema.render(emo["value_template"], state_payload) in emo["options"]
    assert ha_schema.render(by_name["Faces in view"]["value_template"], state_payload).isdigit()

    # The device triggers fire on the events the daemon really sent (HA's automation editor).
    sent = [p for t, p, _ in recorder.messages if t.endswith("/visit/event")]
    fired = sorted(t["type"] for t in triggers for p in sent if ha_schema.trigger_fires(t, p))
    assert fired == ["face_entered", "face_left"]
    events = recorder.json_on("/visit/event")
    kinds = [e["event_type"] for e in events]
    assert kinds == ["face_entered", "face_left"], kinds  # a steady face: two events, not one per frame
    entered, left = events
    assert entered["emotion"] == "happy" and entered["confidence"] > 0.5
    assert entered["track_id"] == left["track_id"]
    assert 2.0 < left["duration"] < 6.0
    for e in events:
        assert set(e) >= {
            "id",
            "type",
            "event_type",
            "track_id",
            "emotion",
            "confidence",
            "scores",
            "duration",
            "ts",
        }
    stats = recorder.json_on("/stats")
    assert stats and stats[-1]["cameras"]["visit"]["frames"] > 10 and stats[-1]["detector_ms"] > 0


def test_home_assistant_restart_gets_discovery_again(
    recorder: Recorder, broker: int, daemon, clip: Path
) -> None:
    # --loop: the re-send waits REDISCOVER_MIN_S after the first discovery; on a slow machine
    # the 8 s clip could end (and the daemon with it) before that (CI, test-fresh, stop 24).
    d = daemon("--source", str(clip), "--loop", "--mqtt", f"mqtt://127.0.0.1:{broker}")
    prefix_of(recorder)
    # availability goes out before discovery: count the configs once they stop arriving.
    recorder.wait_for(lambda t, _p: t.endswith("/config"), timeout=10)
    n, deadline = 0, time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = len(recorder.find(lambda t, _p: t.endswith("/config")))
        if now == n:
            break
        n = now
    assert n > 0
    mqtt_publish.single("homeassistant/status", "online", hostname="127.0.0.1", port=broker)
    recorder.wait_for(lambda t, _p: t.endswith("/config"), count=2 * n, timeout=10)
    recorder.wait_for(lambda t, _p: t.endswith("/visit/state"), count=2, timeout=10)
    assert d.stop() == 0


def test_sigterm_publishes_offline_and_exits_quickly(
    recorder: Recorder, broker: int, daemon, clip: Path
) -> None:
    d = daemon("--source", str(clip), "--mqtt", f"mqtt://127.0.0.1:{broker}")
    prefix = prefix_of(recorder)
    time.sleep(1.0)
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 6.0
    recorder.wait_for(lambda t, p: t == f"{prefix}/availability" and p == "offline", timeout=5)
    recorder.wait_for(lambda t, p: t == f"{prefix}/visit/status" and p == "offline", timeout=5)


def test_broker_credentials(tmp_path: Path, daemon, clip: Path) -> None:
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is not installed (package mosquitto)")
    # Mosquitto started as root drops to user mosquitto: the file must be readable by it.
    pwdir = Path(tempfile.mkdtemp(prefix="edgeemo-pw-"))
    pwdir.chmod(0o755)
    pwfile = pwdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "edge", "Corr3ct-horse"], check=True)
    pwfile.chmod(0o644)
    port = free_port()
    proc = start_broker(port, f"password_file {pwfile}\n", anonymous=False)
    try:
        bad = daemon("--source", str(clip), "--mqtt", f"mqtt://edge:WRONG-pw@127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while "refused the credentials" not in bad.log and time.monotonic() < deadline:
            time.sleep(0.2)
        bad.stop()
        log = bad.log
        assert "refused the credentials" in log and "'edge'" in log
        assert log.count("refused the credentials") == 1  # said once, not on every retry
        assert "WRONG-pw" not in log

        rec = Recorder(port, auth=("edge", "Corr3ct-horse"))
        try:
            ok = daemon(
                "--source",
                str(clip),
                "--mqtt",
                f"mqtt://edge@127.0.0.1:{port}",
                env={"EDGEEMO_MQTT_PASSWORD": "Corr3ct-horse"},
            )
            prefix_of(rec)
            ok.stop()
            assert "Corr3ct-horse" not in ok.log
        finally:
            rec.close()
    finally:
        proc.terminate()
        proc.wait(5)


# --- RTSP -------------------------------------------------------------------------------------


def start_rtsp(port: int, image: Path, user: str, password: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(HERE / "rtsp_server.py"),
            str(port),
            str(image),
            "--user",
            user,
            "--password",
            password,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if not wait_port(port, 10):
        proc.kill()
        pytest.fail(f"RTSP server did not start: {proc.stderr.read().decode()[-500:]}")
    return proc


@pytest.fixture
def rtsp_available() -> None:
    probe = (
        subprocess.run(
            [
                "/usr/bin/python3",
                "-c",
                "import gi; gi.require_version('GstRtspServer', '1.0'); "
                "from gi.repository import GstRtspServer",
            ],
            capture_output=True,
        )
        if Path("/usr/bin/python3").exists()
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0, python3-gi) is not installed")


@pytest.mark.rtsp
def test_rtsp_camera_end_to_end_and_recovery(
    rtsp_available: None, recorder: Recorder, broker: int, daemon, astronaut_png: Path, tmp_path: Path
) -> None:
    port = free_port()
    server = start_rtsp(port, astronaut_png, "viewer", "s3cret-Pw")
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker}}}\n"
        "cameras:\n"
        f"  - name: porch\n    source: 'rtsp://viewer:${{PORCH_PW}}@127.0.0.1:{port}/face'\n"
        "    offline_after_s: 3\n"
    )
    d = daemon("--config", str(cfg), env={"PORCH_PW": "s3cret-Pw"})
    try:
        prefix = prefix_of(recorder)
        recorder.wait_for(lambda t, p: t == f"{prefix}/porch/status" and p == "online", timeout=30)
        recorder.wait_for(
            lambda t, p: t.endswith("/porch/state") and '"dominant_emotion": "happy"' in p, timeout=30
        )
        entered = recorder.wait_for(lambda t, p: t.endswith("/porch/event") and "face_entered" in p)
        assert json.loads(entered[0][1])["emotion"] == "happy"

        server.kill()  # the camera goes away: offline, retried, no crash
        server.wait()
        recorder.wait_for(lambda t, p: t == f"{prefix}/porch/status" and p == "offline", timeout=20)
        time.sleep(2)
        assert d.proc.poll() is None
        # Nobody stays "in view" of a camera that cannot see: the visit ends, and HA sees it
        # end before the camera goes unavailable (face_left, faces 0, then offline).
        recorder.wait_for(lambda t, p: t.endswith("/porch/event") and "face_left" in p, timeout=10)
        assert ending_order(recorder, "porch")[:3] == ["face_left", "faces 0", "offline"]
        n_online = len(recorder.find(lambda t, p: t == f"{prefix}/porch/status" and p == "online"))
        n_entered = len(recorder.find(lambda t, p: t.endswith("/porch/event") and "face_entered" in p))
        server = start_rtsp(port, astronaut_png, "viewer", "s3cret-Pw")  # and comes back
        recorder.wait_for(
            lambda t, p: t == f"{prefix}/porch/status" and p == "online", count=n_online + 1, timeout=60
        )
        recorder.wait_for(
            lambda t, p: t.endswith("/porch/event") and "face_entered" in p, count=n_entered + 1, timeout=30
        )
    finally:
        assert d.stop() == 0
        server.kill()
    log = d.log
    assert "s3cret-Pw" not in log
    assert "viewer:***@127.0.0.1" in log
    assert "Traceback" not in log


def test_unreachable_camera_is_retried_not_fatal(recorder: Recorder, broker: int, daemon) -> None:
    port = free_port()  # nothing listens here
    d = daemon(
        "--source", f"rtsp://admin:topsecret@127.0.0.1:{port}/stream", "--mqtt", f"mqtt://127.0.0.1:{broker}"
    )
    prefix = prefix_of(recorder)
    deadline = time.monotonic() + 15
    while d.log.count("retrying in") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert d.proc.poll() is None  # still running, not crash-looping
    lines = [line for line in d.log.splitlines() if "retrying in" in line]
    assert len(lines) >= 2 and "cannot open rtsp://admin:***@127.0.0.1" in lines[0]
    assert "retrying in 1 s" in lines[0] and "retrying in 2 s" in lines[1]  # backoff grows
    assert recorder.find(lambda t, p: t == f"{prefix}/availability" and p == "online")
    assert d.stop() == 0
    assert "topsecret" not in d.log and "Traceback" not in d.log


def test_tls_broker(tmp_path: Path, daemon, clip: Path) -> None:
    """mqtts with a private CA: the daemon verifies the broker's certificate."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    if not mosquitto_path():  # amqtt, the fallback broker, ignores the TLS listener settings
        pytest.skip("mosquitto is not installed (make test installs it with apt as root)")
    pki = Path(tempfile.mkdtemp(prefix="edgeemo-pki-"))
    pki.chmod(0o755)  # readable by the mosquitto user

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=edgeemo test CA",
        "-keyout",
        str(pki / "ca.key"),
        "-out",
        str(pki / "ca.pem"),
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(pki / "server.key"),
        "-out",
        str(pki / "server.csr"),
    )
    (pki / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        str(pki / "server.csr"),
        "-CA",
        str(pki / "ca.pem"),
        "-CAkey",
        str(pki / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(pki / "ext.cnf"),
        "-out",
        str(pki / "server.pem"),
    )
    for f in pki.iterdir():
        f.chmod(0o644)
    plain, tls = free_port(), free_port()
    proc = start_broker(
        plain,
        f"listener {tls} 127.0.0.1\ncafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
        f"keyfile {pki / 'server.key'}\n",
    )
    rec = Recorder(plain)
    try:
        assert wait_port(tls)
        cfg = tmp_path / "tls.yaml"
        cfg.write_text(
            f"mqtt: {{host: 127.0.0.1, port: {tls}, tls: {{ca_file: {pki / 'ca.pem'}}}}}\n"
            f"cameras: [{{name: visit, source: {clip}}}]\n"
        )
        d = daemon("--config", str(cfg))
        prefix_of(rec)
        rec.wait_for(lambda t, p: t.endswith("/visit/event") and "face_entered" in p, timeout=30)
        assert d.stop() == 0
        # Without our CA the broker is refused; the log must name the certificate (issue 17.7),
        # not call the broker "not reachable".
        cfg.write_text(
            f"mqtt: {{host: 127.0.0.1, port: {tls}, tls: {{}}}}\ncameras: [{{name: visit, source: {clip}}}]\n"
        )
        bad = daemon("--config", str(cfg))
        deadline = time.monotonic() + 20
        while "certificate was refused" not in bad.log and time.monotonic() < deadline:
            time.sleep(0.2)
        assert bad.stop() == 0
        assert "certificate was refused" in bad.log and "ca_file" in bad.log, bad.log
        assert bad.log.count("certificate was refused") <= 2  # once, and in the start-up warning
    finally:
        rec.close()
        proc.terminate()
        proc.wait(5)
