"""Issue 17, items 3 and 9: secrets in URLs never reach a log, and configs that check-config
passed but that broke at run time are refused with exit 78."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import Recorder, run_cli

from edgeemo.config import redact_url
from edgeemo.sources.rtsp import default_name
from edgeemo.tools.devtools import free_port

SECRET = "Pa#ss99"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://viewer:Pa#ss99@10.0.0.5:554/face", "rtsp://viewer:***@10.0.0.5:554/face"),
        ("rtsp://viewer:Pa?ss99@10.0.0.5/face", "rtsp://viewer:***@10.0.0.5/face"),
        ("rtsp://viewer:Pa/ss99@10.0.0.5/face", "rtsp://viewer:***@10.0.0.5/face"),
        ("rtsp://viewer:Pa@ss99@10.0.0.5/face", "rtsp://viewer:***@10.0.0.5/face"),
        ("rtsp://viewer:Pa:ss#/?@99@[fd00::5]:554/a?b=c", "rtsp://viewer:***@[fd00::5]:554/a?b=c"),
        ("rtsp://viewer:Pa%23ss99@10.0.0.5/face", "rtsp://viewer:***@10.0.0.5/face"),
        ("http://token#1@cam.lan/mjpeg", "http://***@cam.lan/mjpeg"),
        ("rtsp://10.0.0.5/face#frag", "rtsp://10.0.0.5/face#frag"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_redaction_hides_any_password_however_written(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("password", ["Pa/ss99", "Pa#ss99", "Pa?ss/99"])
def test_a_camera_name_derived_from_a_url_never_holds_its_password(password: str) -> None:
    name = default_name(f"rtsp://viewer:{password}@10.0.0.5/face")
    assert "ss" not in name and "99" not in name, name


def test_an_rtsp_password_with_a_hash_is_never_logged(
    tmp_path: Path, daemon, recorder: Recorder, broker: int
) -> None:
    port = free_port()  # nothing listens: the daemon logs its attempts to open the camera
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker}}}\n"
        f"cameras: [{{name: authhash, source: 'rtsp://viewer:{SECRET}@127.0.0.1:{port}/face'}}]\n"
    )
    d = daemon("--config", str(cfg))
    deadline = time.monotonic() + 30
    while "authhash" not in d.log.split("device", 1)[-1] and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(3)
    assert d.stop() == 0
    assert "viewer:***@127.0.0.1" in d.log, d.log  # the camera is still named
    assert "Pa#" not in d.log and "ss99" not in d.log, d.log  # before: 7 lines with the password


def _check(tmp_path: Path, text: str, timeout: float = 30) -> tuple[int, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    r = run_cli("check-config", str(cfg), timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("cameras: [{name: x, source: /dev/video0, type: *a9}]")
    # 9^10 values once expanded; before: 59 s, 2.2 GB, then MemoryError and exit 1
    rc, out = _check(tmp_path, "\n".join(lines) + "\n")
    assert rc == 78, out
    assert "aliases" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ({"topic_prefix": "$SYS"}, "must not start with $"),  # the broker drops every event
        ({"topic_prefix": "edge\0emo"}, "NUL"),
        ({"topic_prefix": "x" * 70000}, "longer than 1024 bytes"),  # Publish topic is too long
        ({"discovery_prefix": "$share/ha"}, "must not start with $"),
    ],
)
def test_topic_prefixes_the_broker_would_drop_or_refuse(tmp_path: Path, mqtt: dict, expected: str) -> None:
    cfg = {"mqtt": mqtt, "cameras": [{"name": "x", "source": "/dev/video0"}]}
    rc, out = _check(tmp_path, json.dumps(cfg))  # JSON is YAML
    assert rc == 78 and expected in out, out
    assert "x" * 100 not in out  # a long value is cut in the message


def test_a_detect_fps_that_never_analyses_is_refused(tmp_path: Path) -> None:
    rc, out = _check(tmp_path, "cameras: [{name: x, source: /dev/video0, detect_fps: 1e-300}]\n")
    assert rc == 78 and "detect_fps" in out and "0.1" in out, out
