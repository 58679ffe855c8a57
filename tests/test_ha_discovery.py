"""Home Assistant discovery against a real Mosquitto: ghost entities are removed."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import DaemonProcess, Recorder


def _run(daemon, tmp_path: Path, broker: int, cameras: list[str], discovery: bool = True) -> None:
    cfg = tmp_path / "edgeemo.yaml"
    cams = "".join(f"  - name: {c}\n    source: '{tmp_path / 'face.png'}'\n" for c in cameras)
    cfg.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker}, discovery: {str(discovery).lower()}}}\ncameras:\n{cams}"
    )
    d: DaemonProcess = daemon("--config", str(cfg))
    assert d.proc.wait(40) == 0, d.log  # a still image: one frame, then the run ends


def test_removed_camera_and_discovery_off_leave_no_ghosts(
    recorder: Recorder, broker: int, daemon, tmp_path: Path, astronaut_png: Path
) -> None:
    shutil.copy(astronaut_png, tmp_path / "face.png")
    _run(daemon, tmp_path, broker, ["porch", "hall"])
    hall = {t for t, p, _ in recorder.messages if "/hall_" in t and t.endswith("/config") and p}
    porch = {t for t, p, _ in recorder.messages if "/porch_" in t and t.endswith("/config") and p}
    assert hall and porch and any("/device_automation/" in t for t in hall)

    _run(daemon, tmp_path, broker, ["porch"])  # hall removed from the config
    emptied = {t for t, p, _ in recorder.messages if t.endswith("/config") and p == ""}
    assert emptied == hall  # HA removes exactly hall's entities and triggers

    _run(daemon, tmp_path, broker, ["porch"], discovery=False)
    emptied = {t for t, p, _ in recorder.messages if t.endswith("/config") and p == ""}
    everything = {t for t, p, _ in recorder.messages if t.endswith("/config") and p}
    assert emptied == everything  # the appliance's own entities too
