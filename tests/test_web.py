"""The web face against a real daemon (`edgeemo run` with its config, a real Mosquitto, real
models) over real HTTP on loopback: health, /predict with good and bad input, metrics, cameras,
Server-Sent Events, snapshots, the token, overload."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeemo.cli import parse_http
from edgeemo.errors import ConfigError
from edgeemo.tools.devtools import free_port
from edgeemo.web import is_loopback
from edgeemo.web.images import BadImage, decode, image_bytes
from tests.conftest import run_cli
from tests.web_helpers import WebDaemon, start_web_daemon, web_daemon_on_a_broker

pytestmark = pytest.mark.broker


def data_url(jpeg: bytes) -> bytes:
    return json.dumps({"frame": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}).encode()


def png_claiming(w: int, h: int) -> bytes:
    """A valid PNG header that claims w x h pixels, with a tiny (wrong) body: a decompression bomb's
    shape, without the bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[WebDaemon]:
    with web_daemon_on_a_broker(tmp_path_factory.mktemp("web"), models_dir) as d:
        # Both cameras running and the still one read (happy) before any test looks.
        d.wait(
            lambda b: (
                all(c["online"] for c in b["cameras"].values())
                and (b["cameras"]["astro"]["state"] or {}).get("dominant_emotion") == "happy"
            ),
            what="both cameras online, astro happy",
        )
        yield d
        assert d.proc.stop() == 0, d.proc.log[-3000:]


def test_health_answers_200_with_each_camera(web: WebDaemon) -> None:
    r = web.get("/health")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == "ok" and body["stuck"] == []
    assert body["mqtt"]["connected"] is True and body["undelivered_events"] >= 0
    assert body["version"]
    for name in ("astro", "hall"):
        cam = body["cameras"][name]
        assert cam["online"] is True and cam["fps"] > 0 and cam["last_frame_age_s"] < 5


def test_predict_takes_the_older_services_json_request(web: WebDaemon) -> None:
    jpeg = (web.media / "astronaut.jpg").read_bytes()
    r = web.post("/predict", data_url(jpeg), "application/json")
    assert r.status == 200, r.body
    body = r.json()
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert face["emotion"] == "happy" and body["emotion"] == "happy"
    assert body["probabilities"] == face["probabilities"]
    assert set(face["probabilities"]) >= {"happy", "sad", "neutral", "angry", "surprise"}
    assert abs(sum(face["probabilities"].values()) - 1) < 0.02
    x, y, w, _h = face["box"]
    assert 100 < x < 260 and 20 < y < 160 and 60 < w < 160 and 0 < face["score"] <= 1


@pytest.mark.parametrize("kind", ["image/jpeg", "image/png"])
def test_predict_takes_a_raw_image_body(web: WebDaemon, kind: str) -> None:
    data = (web.media / ("astronaut.jpg" if kind == "image/jpeg" else "astronaut.png")).read_bytes()
    r = web.post("/predict", data, kind)
    assert r.status == 200, r.body
    assert r.json()["emotion"] == "happy"


def test_predict_on_a_picture_without_faces_says_so(web: WebDaemon) -> None:
    _ok, buf = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))
    r = web.post("/predict", buf.tobytes(), "image/jpeg")
    assert r.status == 200 and r.json() == {**r.json(), "emotion": None, "probabilities": None, "faces": []}


def _jpeg() -> bytes:
    _ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    return buf.tobytes()


BAD = {
    "garbage as text/plain": (b"hello", "text/plain", 415, "content type"),
    "no content type": (b"hello", "", 415, "content type"),
    "JSON that is not JSON": (b"{nope", "application/json", 400, "not valid JSON"),
    "JSON without frame": (b'{"image": "x"}', "application/json", 400, '"frame"'),
    "frame not a string": (b'{"frame": 12}', "application/json", 400, '"frame"'),
    "bad base64": (
        b'{"frame": "data:image/jpeg;base64,@@@not base64@@@"}',
        "application/json",
        400,
        "base64",
    ),
    "base64 of text": (
        json.dumps(
            {"frame": "data:image/jpeg;base64," + base64.b64encode(b"not an image").decode()}
        ).encode(),
        "application/json",
        400,
        "not an image",
    ),
    "garbage as image/jpeg": (b"\xff\xd8\xff garbage", "image/jpeg", 400, "not an image"),
    "empty image": (b"", "image/jpeg", 400, "empty"),
    "truncated JPEG": (_jpeg()[: len(_jpeg()) // 2], "image/jpeg", 400, "truncated"),
    "a GIF": (
        base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="),
        "image/png",
        400,
        "GIF",
    ),
    "decompression bomb": (png_claiming(12000, 12000), "image/png", 413, "megapixels"),
    "JSON nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "not valid JSON"),
    "JSON with a 5,000-digit number": (
        b'{"frame": ' + b"9" * 5000 + b"}",
        "application/json",
        400,
        "not valid JSON",
    ),
    "bomb past Pillow's bound": (png_claiming(60000, 60000), "image/png", 413, "megapixels"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_predict_rejects_bad_input_with_a_json_4xx(web: WebDaemon, case: str) -> None:
    body, kind, status, words = BAD[case]
    r = web.post("/predict", body, kind)
    assert r.status == status, (case, r.status, r.body)
    assert words in r.json()["error"], r.json()


def test_predict_reads_big_16_bit_and_multi_picture_photos(web: WebDaemon) -> None:
    from PIL import Image

    astro = cv2.imread(str(web.media / "astronaut.png"))
    # A 12 MP photo: read shrunk (the detector's memory), boxes in the photo's own pixels.
    big = cv2.resize(astro, (3456, 3456), interpolation=cv2.INTER_CUBIC)
    r = web.post("/predict", cv2.imencode(".jpg", big)[1].tobytes(), "image/jpeg")
    body = r.json()
    assert r.status == 200 and body["emotion"] == "happy" and (body["width"], body["height"]) == (3456, 3456)
    x, _, w, _ = body["faces"][0]["box"]
    assert 100 * 6.75 < x < 260 * 6.75 and 60 * 6.75 < w < 160 * 6.75
    # 16-bit grey PNG: its top 8 bits, not a white page.
    grey16 = cv2.cvtColor(astro, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    r = web.post("/predict", cv2.imencode(".png", grey16)[1].tobytes(), "image/png")
    assert r.status == 200 and len(r.json()["faces"]) == 1
    # A JPEG with a multi-picture segment (Pillow says "MPO"), as some phones write.
    rgb = Image.fromarray(astro[:, :, ::-1])
    buf = io.BytesIO()
    rgb.save(buf, "MPO", save_all=True, append_images=[rgb])
    r = web.post("/predict", buf.getvalue(), "image/jpeg")
    assert r.status == 200 and r.json()["emotion"] == "happy"


def test_a_client_leaving_mid_upload_is_not_an_error(web: WebDaemon) -> None:
    import socket

    host, port = web.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000\r\n\r\nabc"
        )
        time.sleep(0.3)
    time.sleep(0.5)
    metrics = web.get("/metrics").body.decode()
    assert 'edgeemo_predict_requests_total{code="500"}' not in metrics
    assert "failed on an image it had accepted" not in web.proc.log


def test_without_a_token_only_loopback_host_names_are_answered(web: WebDaemon) -> None:
    # DNS rebinding: a page the appliance's own browser visits must not read the API.
    r = web.get("/api/cameras", headers={"Host": "attacker.example"})
    assert r.status == 403 and "loopback" in r.json()["error"]
    port = web.base.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert web.get("/health", headers={"Host": host}).status == 200, host


def test_a_returning_event_client_gets_what_it_missed(web: WebDaemon) -> None:
    recent = web.get("/api/events/recent").json()["events"]
    assert len(recent) >= 2 and all(isinstance(e["seq"], int) for e in recent)
    first = recent[0]["seq"]
    req = urllib.request.Request(web.base + "/api/events", headers={"Last-Event-ID": str(first)})
    with urllib.request.urlopen(req, timeout=30) as r:
        for raw in r:
            line = raw.decode()
            if line.startswith("data:"):
                assert json.loads(line[5:])["seq"] == recent[1]["seq"]  # the next one, replayed
                break


def test_predict_rejects_a_20_mb_body_with_413(web: WebDaemon) -> None:
    r = web.post("/predict", b"\xff" * (20 * 1024 * 1024), "image/jpeg")
    assert r.status == 413 and "limit" in r.json()["error"]


def test_predict_rejects_a_chunked_body_over_the_limit(web: WebDaemon) -> None:
    # No Content-Length to look at: the limit holds while the body streams in.
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"\0" * (1024 * 1024)

    req = urllib.request.Request(
        web.base + "/predict", data=chunks(), method="POST", headers={"Content-Type": "image/jpeg"}
    )
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("accepted a 20 MB chunked body")
    except urllib.error.HTTPError as e:
        assert e.code == 413
    except (ConnectionResetError, BrokenPipeError, urllib.error.URLError):
        pass  # the server answered 413 and closed while we were still sending: also a refusal


def test_wrong_method_and_unknown_paths_are_json_errors(web: WebDaemon) -> None:
    r = web.get("/predict")
    assert r.status == 405 and "error" in r.json()
    r = web.get("/api/cameras/nosuch")
    assert r.status == 404 and "nosuch" in r.json()["error"]


def test_metrics_are_prometheus_text_with_edgeemo_series(web: WebDaemon) -> None:
    web.post("/predict", (web.media / "astronaut.jpg").read_bytes(), "image/jpeg")
    r = web.get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.body.decode())
        for s in fam.samples
    }
    names = {n for n, _ in samples}
    for needed in (
        "edgeemo_frames_analysed_total",
        "edgeemo_frames_skipped_total",
        "edgeemo_camera_fps",
        "edgeemo_detect_seconds_bucket",
        "edgeemo_classify_seconds_count",
        "edgeemo_events_total",
        "edgeemo_events_undelivered",
        "edgeemo_mqtt_reconnects_total",
        "edgeemo_predict_seconds_count",
        "process_resident_memory_bytes",
    ):
        assert needed in names, needed
    assert samples[("edgeemo_frames_analysed_total", (("camera", "astro"),))] > 0
    assert samples[("edgeemo_mqtt_connected", ())] == 1
    assert samples[("edgeemo_events_total", (("camera", "astro"), ("type", "face_entered")))] >= 1
    # Histogram buckets are cumulative and end in the count.
    buckets = sorted(
        (float(dict(lbl)["le"]), v)
        for (n, lbl), v in samples.items()
        if n == "edgeemo_detect_seconds_bucket" and dict(lbl)["camera"] == "astro"
    )
    values = [v for _, v in buckets]
    assert (
        values == sorted(values)
        and values[-1] == samples[("edgeemo_detect_seconds_count", (("camera", "astro"),))]
    )


def test_cameras_api_gives_state_faces_and_history(web: WebDaemon) -> None:
    body = web.get("/api/cameras").json()
    astro = body["cameras"]["astro"]
    assert body["snapshots"] is False and astro["snapshot"] is False
    assert astro["state"]["faces"] == 1 and astro["frame_size"] == [512, 512]
    (face,) = astro["faces"]
    assert face["emotion"] == "happy" and len(face["box"]) == 4
    assert astro["history"] and "mix" in astro["history"][0]
    one = web.get("/api/cameras/astro").json()
    assert one["state"]["dominant_emotion"] == "happy"


def test_snapshot_is_403_without_the_option(web: WebDaemon) -> None:
    r = web.get("/api/cameras/astro/latest.jpg")
    assert r.status == 403 and "http.snapshots" in r.json()["error"]


def test_events_stream_as_server_sent_events(web: WebDaemon) -> None:
    got: list[dict] = []
    with urllib.request.urlopen(web.base + "/api/events", timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("data:"):
                got.append(json.loads(line[5:]))
                if {e["event_type"] for e in got} >= {"face_entered", "face_left"}:
                    break
    hall = [e for e in got if e["camera"] == "hall"]
    assert hall and all({"track_id", "emotion", "confidence", "ts", "seq"} <= set(e) for e in hall)
    recent = web.get("/api/events/recent?camera=hall").json()["events"]
    assert recent and all(e["camera"] == "hall" for e in recent)


def test_static_pages_ship_in_the_package(web: WebDaemon) -> None:
    for path, words in [("/", b"live view"), ("/webcam", b"webcam.js")]:
        r = web.get(path)
        assert r.status == 200 and words in r.body.lower()
    assert web.get("/static/live.js").status == 200


def test_overload_answers_429_quickly_never_5xx(tmp_path: Path, models_dir: Path, broker: int) -> None:
    d = start_web_daemon(tmp_path, models_dir, broker, {"predict_workers": 1, "predict_queue": 0})
    try:
        big = cv2.resize(cv2.imread(str(d.media / "astronaut.png")), (1920, 1920))
        body = cv2.imencode(".jpg", big)[1].tobytes()
        codes: list[int] = []
        go = threading.Barrier(6)

        def hit() -> None:
            go.wait()
            codes.append(d.post("/predict", body, "image/jpeg").status)

        threads = [threading.Thread(target=hit) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(set(codes)) == [200, 429], codes
    finally:
        assert d.proc.stop() == 0


def test_token_guards_everything_but_the_pages(tmp_path: Path, models_dir: Path, broker: int) -> None:
    d = start_web_daemon(tmp_path, models_dir, broker, env={"EDGEEMO_HTTP_TOKEN": "s3cret-Token"})
    try:
        for path in ("/health", "/metrics", "/api/cameras", "/api/events/recent"):
            r = d.get(path)
            assert r.status == 401 and "bearer" in r.json()["error"]
            assert d.get(path, headers={"Authorization": "Bearer wrong"}).status == 401
        assert d.post("/predict", b"x", "image/jpeg").status == 401
        assert d.get("/health", headers={"Authorization": "Bearer s3cret-Token"}).status == 200
        # The scheme is case-insensitive (RFC 7235); a token host name needs no loopback Host.
        ok = {"Authorization": "bearer s3cret-Token", "Host": "gateway.lan"}
        assert d.get("/health", headers=ok).status == 200
        assert d.get("/").status == 200 and d.get("/static/common.js").status == 200
    finally:
        d.proc.stop()
    assert "s3cret-Token" not in d.proc.log


def test_snapshots_when_turned_on(tmp_path: Path, models_dir: Path, broker: int) -> None:
    d = start_web_daemon(tmp_path, models_dir, broker, {"snapshots": True})
    try:
        d.wait(lambda b: b["cameras"]["astro"]["snapshot"], what="a snapshot")
        r = d.get("/api/cameras/astro/latest.jpg")
        assert r.status == 200 and r.headers["content-type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(r.body, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (512, 512, 3)
        # A client still following the events does not hold the daemon up when it stops.
        stream = urllib.request.urlopen(d.base + "/api/events", timeout=30)
        t0 = time.monotonic()
        assert d.proc.stop() == 0
        assert time.monotonic() - t0 < 10, d.proc.log[-2000:]
        stream.close()
    finally:
        d.proc.stop()


def test_beyond_loopback_without_a_token_stops_with_78(tmp_path: Path, astronaut_png: Path) -> None:
    r = run_cli("run", "--source", str(astronaut_png), "--http", f"0.0.0.0:{free_port()}",
                "--state-dir", str(tmp_path), "--mqtt", "mqtt://127.0.0.1:1")  # fmt: skip
    assert r.returncode == 78, r.stderr
    assert "EDGEEMO_HTTP_TOKEN" in r.stderr and "0.0.0.0" in r.stderr
    assert "online" not in r.stderr  # stopped before any camera opened


def test_a_taken_port_is_one_clear_line(tmp_path: Path, astronaut_png: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run_cli("run", "--source", str(astronaut_png), "--http", f"127.0.0.1:{port}",
                    "--state-dir", str(tmp_path), "--mqtt", "mqtt://127.0.0.1:1")  # fmt: skip
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "camera astro: online" not in r.stderr


# -- the parts without a daemon ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, want",
    [
        ("127.0.0.1:8780", ("127.0.0.1", 8780)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9000", ("::1", 9000)),
        (":8780", ("127.0.0.1", 8780)),
        ("8780", ("127.0.0.1", 8780)),
    ],
)
def test_http_flag_parses(value: str, want: tuple[str, int]) -> None:
    got = parse_http(value)
    assert (got["host"], got["port"]) == want and got["enabled"] is True


@pytest.mark.parametrize("value", ["host:port", "127.0.0.1:99999", "", "http://127.0.0.1:8000", "[::1:80"])
def test_http_flag_rejects_nonsense(value: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_http(value)


def test_loopback_is_only_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("gateway.lan")


def test_decode_turns_exif_rotation_upright() -> None:
    from PIL import Image

    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    image, scale = decode(buf.getvalue(), 10**6)
    assert image.shape == (40, 20, 3) and scale == 1


def test_image_bytes_takes_bare_base64_too() -> None:
    raw = b"\xff\xd8\xff\xe0"
    assert (
        image_bytes("application/json", json.dumps({"frame": base64.b64encode(raw).decode()}).encode()) == raw
    )
    with pytest.raises(BadImage) as e:
        image_bytes("application/json", b"[1, 2]")
    assert e.value.status == 400
