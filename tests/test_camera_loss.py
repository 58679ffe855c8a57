"""When a camera stops (end of file, RTSP drop, SIGTERM), Home Assistant must see the visit
end before the camera goes unavailable: face_left, then a faces-0 state, then offline.
Real daemon, real Mosquitto; the recorder keeps arrival order across topics."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest

from edgeemo.tools.devtools import astronaut_bgr, free_port
from tests.conftest import DaemonProcess, Recorder, ending_order
from tests.test_daemon_mqtt import rtsp_available, start_rtsp  # noqa: F401 (a fixture)


def face_clip(path: Path, seconds: float = 4.0, fps: int = 10) -> Path:
    """A face in view from the first frame to the last: the clip ends mid-visit."""
    face = cv2.resize(astronaut_bgr(), (480, 480))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (480, 480))
    for _ in range(int(seconds * fps)):
        writer.write(face)
    writer.release()
    return path


def test_end_of_file_mid_visit_sends_face_left_and_faces_0_before_offline(
    recorder: Recorder, broker: int, daemon, tmp_path: Path
) -> None:
    clip = face_clip(tmp_path / "porch.mp4")
    d: DaemonProcess = daemon("--source", str(clip), "--mqtt", f"mqtt://127.0.0.1:{broker}")
    assert d.proc.wait(40) == 0, d.log
    recorder.wait_for(lambda t, p: t.endswith("/porch/status") and p == "offline", count=2, timeout=5)
    assert ending_order(recorder, "porch") == ["face_left", "faces 0", "offline"], d.log


@pytest.mark.parametrize("kind", ["file", "rtsp"])
def test_sigterm_mid_visit_ends_it_before_offline(
    kind: str, recorder: Recorder, broker: int, daemon, tmp_path: Path, astronaut_png: Path, request
) -> None:
    """On SIGTERM an open visit gets its face_left and the retained state says faces 0."""
    server = None
    if kind == "file":
        source = f"'{astronaut_png}'\n    loop: true"  # a still image, looped: a face always in view
    else:
        request.getfixturevalue("rtsp_available")
        port = free_port()
        server = start_rtsp(port, astronaut_png, "viewer", "pw")
        source = f"'rtsp://viewer:pw@127.0.0.1:{port}/face'"
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker}}}\ncameras:\n  - name: porch\n    source: {source}\n"
    )
    try:
        d: DaemonProcess = daemon("--config", str(cfg))
        recorder.wait_for(lambda t, p: t.endswith("/porch/event") and "face_entered" in p, timeout=40)
        assert d.stop() == 0
    finally:
        if server:
            server.kill()
    recorder.wait_for(lambda t, p: t.endswith("/availability") and p == "offline", timeout=5)
    assert ending_order(recorder, "porch")[:3] == ["face_left", "faces 0", "offline"], d.log
    states = recorder.json_on("/porch/state")
    assert states[-1]["faces"] == 0


def test_run_loop_keeps_a_still_image_in_view(
    recorder: Recorder, broker: int, daemon, astronaut_png: Path
) -> None:
    """`edgeemo run --source face.png --loop`: a camera that always sees the image (without
    --loop an image is one frame and the run ends)."""
    d: DaemonProcess = daemon(
        "--source", str(astronaut_png), "--loop", "--mqtt", f"mqtt://127.0.0.1:{broker}"
    )
    recorder.wait_for(lambda t, p: t.endswith("/astronaut/event") and "face_entered" in p, timeout=40)
    time.sleep(2)
    assert d.proc.poll() is None, d.log
    assert d.stop() == 0
