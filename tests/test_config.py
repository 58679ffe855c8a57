"""Config validation: every error names the key path, the value and what was expected."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from edgeemo import credentials
from edgeemo.cli import parse_mqtt_url
from edgeemo.config import Config, ConfigError, load_config, parse_config, redact_url
from edgeemo.errors import EXIT_CONFIG
from edgeemo.sources import default_name as camera_name
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "edgeemo.example.yaml"


def check(path: Path) -> subprocess.CompletedProcess:
    return run_cli("check-config", str(path))


def _option_paths(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, key) of every option in the config model, nested sections walked."""
    out = []
    for key, field in model.model_fields.items():
        path = f"{prefix}{key}"
        out.append((path, key))
        for sub in _models_in(field.annotation):
            out += _option_paths(sub, f"{path}.")
    return out


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def test_example_config_is_valid_and_documents_every_option() -> None:
    cfg = load_config(EXAMPLE)
    assert [c.name for c in cfg.cameras] == ["front_door", "hallway", "desk", "recording"]
    assert [c.kind for c in cfg.cameras] == ["rtsp", "picamera2", "v4l2", "file"]
    text = EXAMPLE.read_text()
    undocumented = [
        path for path, key in _option_paths(Config) if not re.search(rf"^\s*(- )?#?\s*{key}:", text, re.M)
    ]
    assert not undocumented, f"not documented in the example config: {undocumented}"
    # The example's front door needs ${FRONT_DOOR_PASSWORD}: checked as `run` would, it is refused
    # while unset; --no-secrets checks the rest and says plainly what it did not check.
    r = check(EXAMPLE)
    assert r.returncode == EXIT_CONFIG and "${FRONT_DOOR_PASSWORD} is not set" in r.stderr
    r = run_cli("check-config", "--no-secrets", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "4 camera(s)" in r.stdout and "front_door (rtsp, 1 mask, 1 zone)" in r.stdout
    assert "NOT checked (--no-secrets)" in r.stdout and "${FRONT_DOOR_PASSWORD}" in r.stdout


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("cameras: [{name: a, source: x.mp4}]\nmqtt: {hots: broker}\n", "mqtt.hots: unknown key"),
        ("cameras: [{name: a, source: x.mp4, detect_fps: fast}]\n", "cameras[0](a).detect_fps"),
        ("cameras: [{name: a, source: x.mp4}]\nmqtt: {port: 99999}\n", "mqtt.port"),
        ("cameras: [{name: 'bad name', source: x}]\n", "cameras[0](bad name).name"),
        ("mqtt: {host: h}\n", "cameras: required key is missing"),
        ("cameras: [{name: a, source: x}, {name: a, source: y}]\n", "camera name 'a' is used twice"),
        ("cameras: [{name: a, source: x}]\nmqtt: {password: hunter2}\n", "EDGEEMO_MQTT_PASSWORD"),
        ("cameras: [{name: a, source: x}]\ninference: {backend: tpu}\n", "inference.backend"),
        ("- just\n- a list\n", "expected a mapping"),
        ("cameras: [{name: a, source: x}\n", "YAML syntax error at line"),
    ],
)
def test_bad_config_exits_78_naming_the_problem(tmp_path: Path, yaml_text: str, expected: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    r = check(p)
    assert r.returncode == EXIT_CONFIG
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr + r.stdout


MODELS_DIR = ROOT / "models"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("detector: {model: short_rang}\n", "detector.model: model 'short_rang' is neither a built-in"),
        ("emotion: {model: /nowhere/mine.tflite}\n", "emotion.model: model '/nowhere/mine.tflite'"),
        ("cameras: [{name: a, source: 'rtsp://u:${UNSET_PW_16}@h/s'}]\n", "${UNSET_PW_16} is not set"),
        ("cameras: [{name: a, type: v4l2, source: 'rtsp://h/s'}]\n", "cameras.a.type: v4l2, but the source"),
        ("cameras: [{name: a, type: rtsp, source: /dev/video0}]\n", "cameras.a.type: rtsp, but the source"),
        ("mqtt: {port: 99999}\n", "mqtt.port"),
        (
            "inference: {backend: edgetpu}\ndetector: {edgetpu_model: /nowhere/d_edgetpu.tflite}\n",
            "detector.edgetpu_model: /nowhere/d_edgetpu.tflite does not exist",
        ),
    ],
)
def test_check_config_refuses_what_run_refuses(
    tmp_path: Path, models_dir: Path, yaml_text: str, expected: str
) -> None:
    """check-config (Ansible's validate:, the unit's ExecStartPre) and run agree, with the same line."""
    p = tmp_path / "edgeemo.yaml"
    if "cameras:" not in yaml_text:
        yaml_text += "cameras: [{name: a, source: x.mp4}]\n"
    p.write_text(f"models_dir: {models_dir}\nstate_dir: {tmp_path / 'state'}\n{yaml_text}")
    r = check(p)
    assert r.returncode == EXIT_CONFIG and expected in r.stderr, r.stderr
    ran = run_cli("run", "--config", str(p), timeout=30)
    assert ran.returncode == EXIT_CONFIG and expected in ran.stderr, ran.stderr
    assert "Traceback" not in r.stderr + ran.stderr


def test_check_config_lists_every_problem_at_once(tmp_path: Path, models_dir: Path) -> None:
    p = tmp_path / "edgeemo.yaml"
    p.write_text(
        f"models_dir: {models_dir}\ndetector: {{model: short_rang}}\n"
        "cameras: [{name: a, source: 'rtsp://${UNSET_PW_16}@h/s'}, {name: b, type: v4l2, source: 'rtsp://h'}]\n"
    )
    lines = check(p).stderr.strip().splitlines()
    assert len(lines) == 3, lines  # the shared detector once, the secret, the type
    r = run_cli("check-config", "--no-secrets", str(p))
    assert r.returncode == EXIT_CONFIG and "UNSET_PW_16" not in r.stderr and len(r.stderr.splitlines()) == 2


def test_wrong_type_message_shows_value_and_expectation(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("cameras: [{name: a, source: x.mp4, detect_fps: fast}]\n")
    err = check(p).stderr
    assert "'fast'" in err and "valid number" in err


def test_non_utf8_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"cameras: [{name: caf\xe9, source: x}]\n")
    r = check(p)
    assert r.returncode == EXIT_CONFIG and "not valid UTF-8 at byte" in r.stderr
    r = check(tmp_path / "nope.yaml")
    assert r.returncode == EXIT_CONFIG and "cannot read the config file" in r.stderr


def test_run_with_bad_config_stops_before_touching_a_camera(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("cameras: [{name: a, source: /dev/video0, fps: 5}]\n")
    r = run_cli("run", "--config", str(p), timeout=30)
    assert r.returncode == EXIT_CONFIG
    assert "cameras[0](a).fps: unknown key" in r.stderr
    assert "V4L2" not in r.stderr  # no camera was opened


def test_secrets_come_from_env_or_credentials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAM_PW", raising=False)
    with pytest.raises(ConfigError, match=r"\$\{CAM_PW\} is not set"):
        credentials.expand("rtsp://u:${CAM_PW}@h/s", "cameras.a.source")
    (tmp_path / "cam_pw").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert credentials.expand("rtsp://u:${CAM_PW}@h/s", "x") == "rtsp://u:s3cret@h/s"
    monkeypatch.setenv("CAM_PW", "fromenv")
    assert credentials.expand("${CAM_PW}", "x") == "fromenv"


def test_redact_url_hides_passwords() -> None:
    assert redact_url("rtsp://admin:pa%40ss@10.0.0.2:554/s") == "rtsp://admin:***@10.0.0.2:554/s"
    assert redact_url("rtsp://10.0.0.2/s") == "rtsp://10.0.0.2/s"
    assert "tok" not in redact_url("rtsp://tok@cam/s")


def test_mqtt_url_and_camera_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEEMO_MQTT_PASSWORD", raising=False)
    assert parse_mqtt_url("mqtts://bob:pw@broker.lan:8884") == {
        "host": "broker.lan",
        "port": 8884,
        "username": "bob",
        "tls": {},
    }
    import os

    assert os.environ["EDGEEMO_MQTT_PASSWORD"] == "pw"
    with pytest.raises(ConfigError, match="scheme must be"):
        parse_mqtt_url("http://x")
    taken: set[str] = set()
    assert camera_name("rtsp://u:p@cam.lan:554/live/ch1", taken) == "cam_lan_live_ch1"
    assert camera_name("/clips/Front Door.mp4", taken) == "Front_Door"
    assert camera_name("/clips/Front Door.mkv", taken) == "Front_Door_2"
    cfg = parse_config({"cameras": [{"name": "x", "source": "/dev/video2"}]})
    assert cfg.cameras[0].kind == "v4l2" and cfg.detector_for(cfg.cameras[0]).model == "auto"
