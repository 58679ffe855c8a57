"""The shipped systemd unit: valid, hardened, and in step with the daemon's behaviour."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from edgeemo.errors import EXIT_CONFIG

UNIT = ROOT / "systemd" / "edgeemo.service"
JETSON_DROPIN = ROOT / "systemd" / "edgeemo.service.d" / "jetson-gpu.conf"


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed (make test installs systemd with apt)")
    return exe


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_verifies_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's edgeemo.
    exe = Path(sys.executable).with_name("edgeemo")
    unit = tmp_path / "edgeemo.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgeemo/venv/bin/edgeemo", str(exe)))
    r = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def _exposure(unit: Path) -> tuple[float, str]:
    r = subprocess.run([_analyze(), "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for edgeemo\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    return float(m.group(1)), r.stdout


def _with_jetson_dropin(tmp_path: Path, unit_text: str) -> Path:
    """The unit beside its drop-in folder, as the role installs both for backend onnx."""
    unit = tmp_path / "edgeemo.service"
    unit.write_text(unit_text)
    (tmp_path / "edgeemo.service.d").mkdir()
    shutil.copy(JETSON_DROPIN, tmp_path / "edgeemo.service.d" / JETSON_DROPIN.name)
    return unit


def _device_allow(text: str) -> list[str]:
    return [ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith("DeviceAllow=")]


def test_unit_exposure_is_at_most_2() -> None:
    score, out = _exposure(UNIT)
    assert score <= 2.0, out


def test_jetson_gpu_dropin_keeps_exposure_at_most_2(tmp_path: Path) -> None:
    score, out = _exposure(_with_jetson_dropin(tmp_path, UNIT.read_text()))
    acl = next(ln for ln in out.splitlines() if "DeviceAllow=" in ln)
    # The drop-in was read (its nodes are in the unit's ACL), and the policy is still closed.
    for node in ("/dev/nvmap", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl", "/dev/nvidia0"):
        assert f"{node}:rw" in acl, acl
    assert "char-video4linux:rw" in acl, acl
    assert score <= 2.0, out


def test_jetson_gpu_dropin_verifies_clean(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("edgeemo")
    unit = _with_jetson_dropin(tmp_path, UNIT.read_text().replace("/opt/edgeemo/venv/bin/edgeemo", str(exe)))
    r = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_gpu_devices_only_in_the_jetson_dropin() -> None:
    # A gateway without backend onnx gets the base unit alone: no GPU node in it.
    assert not [d for d in _device_allow(UNIT.read_text()) if "/dev/nv" in d]
    gpu = _device_allow(JETSON_DROPIN.read_text())
    assert gpu and all(d.startswith("/dev/nv") and d.endswith(" rw") for d in gpu), gpu
    assert "[Service]" in JETSON_DROPIN.read_text()


def test_unit_matches_the_daemon() -> None:
    s = _settings()
    assert s["Type"] == ["notify"]  # the daemon sends READY=1 once models are loaded
    assert s["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]  # bad config: no restart loop
    assert s["Restart"] == ["on-failure"] and int(s["WatchdogSec"][0]) >= 20
    assert s["User"] == ["edgeemo"] and s["StateDirectory"] == ["edgeemo"]
    assert any(v.startswith("mqtt_password:") for v in s["LoadCredential"])
    assert any("check-config" in v for v in s["ExecStartPre"])
    assert {"char-video4linux rw", "char-usb_device rw", "char-apex rw"} <= set(s["DeviceAllow"])
