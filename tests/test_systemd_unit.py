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


def test_unit_exposure_is_at_most_2() -> None:
    r = subprocess.run([_analyze(), "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for edgeemo\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unit_matches_the_daemon() -> None:
    s = _settings()
    assert s["Type"] == ["notify"]  # the daemon sends READY=1 once models are loaded
    assert s["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]  # bad config: no restart loop
    assert s["Restart"] == ["on-failure"] and int(s["WatchdogSec"][0]) >= 20
    assert s["User"] == ["edgeemo"] and s["StateDirectory"] == ["edgeemo"]
    assert any(v.startswith("mqtt_password:") for v in s["LoadCredential"])
    assert any("check-config" in v for v in s["ExecStartPre"])
    assert {"char-video4linux rw", "char-usb_device rw", "char-apex rw"} <= set(s["DeviceAllow"])
