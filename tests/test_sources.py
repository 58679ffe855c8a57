"""Sources and the reader: pacing, bounded queue, bad frames, reconnect with backoff."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.config import CameraConfig
from edgeemo.sources import (
    END,
    CameraReader,
    Frame,
    FrameQueue,
    Source,
    SourceError,
    StatusChange,
    make_source,
)
from edgeemo.sources.base import frame_problem
from edgeemo.sources.file import FileSource
from edgeemo.sources.rtsp import RTSPSource
from edgeemo.tools.devtools import free_port, make_demo_clip
from tests.test_daemon_mqtt import rtsp_available  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", fps=10, seconds=2.0)


def test_file_source_plays_at_the_clips_frame_rate(clip: Path) -> None:
    src = FileSource(str(clip))
    src.open()
    t0 = time.monotonic()
    n = 0
    while src.read() is not None:
        n += 1
    elapsed = time.monotonic() - t0
    src.close()
    assert n == 20
    assert 1.7 < elapsed < 3.0  # 20 frames at 10 fps, as a camera would deliver them


def test_file_source_loops_and_still_images(clip: Path, tmp_path: Path) -> None:
    src = FileSource(str(clip), loop=True)
    src.open()
    src._fps = 1000.0  # no need to wait in this test
    assert sum(src.read() is not None for _ in range(45)) == 45
    img = tmp_path / "still.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    still = FileSource(str(img))
    still.open()
    assert still.read() is not None and still.read() is None
    with pytest.raises(SourceError, match="does not exist"):
        FileSource(str(tmp_path / "missing.mp4")).open()
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="not a readable video"):
        FileSource(str(tmp_path / "junk.mp4")).open()


def test_queue_drops_the_oldest_and_counts() -> None:
    q = FrameQueue(depth=2)
    for i in range(5):
        q.put(Frame("c", float(i), np.zeros((8, 8), np.uint8), i))
    assert q.dropped == 3
    got = q.get(0.1)
    assert got is not None and got.index == 3
    assert q.get(0.1).index == 4 and q.get(0.05) is None


def test_queue_never_drops_status_changes() -> None:
    q = FrameQueue(depth=1)
    q.put(Frame("c", 0.0, np.zeros((8, 8), np.uint8), 0))
    q.put_status(StatusChange(False, "stream broke"))
    q.put(Frame("c", 1.0, np.zeros((8, 8), np.uint8), 1))  # drops frame 0, not the status
    q.close()
    got = [q.get(0.05) for _ in range(3)]
    assert got[0] == StatusChange(False, "stream broke") and got[1].index == 1 and got[2] is END
    assert q.dropped == 1


@pytest.mark.parametrize(
    ("img", "problem"),
    [
        (np.zeros((0, 0, 3), np.uint8), "too small"),
        (np.zeros((480, 640, 3), np.float32), "pixel type"),
        (np.zeros((480, 640, 7), np.uint8), "shape"),
        (np.zeros((20000, 20000), np.uint8), "too large"),
        (None, "not an image"),
    ],
)
def test_bad_frames_are_named(img: object, problem: str) -> None:
    assert problem in (frame_problem(img) or "")
    assert frame_problem(np.zeros((480, 640, 3), np.uint8)) is None


class ScriptedSource(Source):
    """Fails to open ``fail_opens`` times, then yields frames, some of them bad, then breaks."""

    def __init__(self, fail_opens: int, frames: list) -> None:
        self.fail_opens, self.frames, self.opens = fail_opens, list(frames), 0

    def describe(self) -> str:
        return "scripted"

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise SourceError("camera unreachable")

    def read(self):
        if not self.frames:
            raise SourceError("stream broke")
        return self.frames.pop(0)

    def close(self) -> None:
        pass


def test_reader_reconnects_with_backoff_and_skips_bad_frames() -> None:
    good = np.zeros((48, 64, 3), np.uint8)
    src = ScriptedSource(2, [good, np.zeros((2, 2), np.uint8), good, "garbage", good])
    q = FrameQueue(depth=10)
    r = CameraReader("cam", src, fps=1000, queue=q, backoff=(0.05, 0.2))
    r.start()
    deadline = time.monotonic() + 5
    while src.opens < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    r.stop_event.set()
    r.join(2)
    assert src.opens >= 4  # two failed opens, one good session, then reconnect attempts
    assert r.bad_frames == 2 and r.frames_read == 3
    items = []
    while (item := q.get(0.05)) is not None and item is not END:
        items.append(item)
    # Online with the first frame, offline when it broke: in the queue, in order with the frames.
    statuses = [i.online for i in items if isinstance(i, StatusChange)]
    assert statuses[:2] == [True, False]
    assert isinstance(items[0], StatusChange) and isinstance(items[1], Frame)


def test_reader_fps_cap_skips_frames_without_counting_drops(clip: Path) -> None:
    q = FrameQueue(depth=100)
    r = CameraReader("cam", FileSource(str(clip)), fps=2.0, queue=q)
    r.start()
    r.finished.wait(10)
    assert r.frames_read == 20
    assert 3 <= q._frames <= 6  # ~2 frames/s of a 2 s clip
    assert q.dropped == 0


def test_rtsp_source_never_shows_the_password() -> None:
    src = RTSPSource("rtsp://admin:hunter2@127.0.0.1:1/none", timeout_s=1)
    assert "hunter2" not in src.describe()
    with pytest.raises(SourceError) as e:
        src.open()
    assert "hunter2" not in str(e.value) and "admin:***@127.0.0.1" in str(e.value)


def test_picamera_adapter_reads_the_lores_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Pi camera here: a stand-in picamera2 module checks how the adapter drives it."""
    calls: dict[str, object] = {}

    class FakePicamera2:
        def create_video_configuration(self, main, lores):
            calls["config"] = (main, lores)
            return {"main": main, "lores": lores}

        def configure(self, cfg):
            calls["configured"] = cfg

        def start(self):
            calls["started"] = True

        def capture_array(self, stream):
            calls["stream"] = stream
            w, h = calls["config"][1]["size"]
            return np.full((h * 3 // 2, w), 128, np.uint8)  # YUV420 planar

        def stop(self):
            calls["stopped"] = True

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    src = make_source(CameraConfig(name="pi", source="picamera2", width=320, height=240))
    src.open()
    frame = src.read()
    src.close()
    assert frame.shape == (240, 320, 3) and calls["stream"] == "lores"
    assert calls["config"][1] == {"size": (320, 240), "format": "YUV420"} and calls["stopped"]


def test_picamera_missing_module_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match="python3-picamera2"):
        make_source(CameraConfig(name="pi", source="picamera2")).open()


def test_one_stalled_reader_does_not_block_another(clip: Path) -> None:
    class Hanging(ScriptedSource):
        def read(self):
            threading.Event().wait(30)

    q1, q2 = FrameQueue(), FrameQueue(depth=100)
    hung = CameraReader("a", Hanging(0, []), 5, q1)
    ok = CameraReader("b", FileSource(str(clip)), 100, q2)
    hung.start()
    ok.start()
    assert ok.finished.wait(10) and ok.frames_read == 20
    hung.stop_event.set()


@pytest.mark.rtsp
@pytest.mark.usefixtures("rtsp_available")
def test_rtsp_failures_say_which(astronaut_png: Path) -> None:
    """Refused, wrong path (404), wrong password (401), no password, unknown host: each named."""
    from tests.test_daemon_mqtt import start_rtsp

    port = free_port()
    server = start_rtsp(port, astronaut_png, "viewer", "s3cret-Pw")
    cases = {
        f"rtsp://viewer:s3cret-Pw@127.0.0.1:{port}/nope": "no stream at /nope (RTSP 404)",
        f"rtsp://viewer:WRONG-pw@127.0.0.1:{port}/face": "refused the user name 'viewer' or its password",
        f"rtsp://127.0.0.1:{port}/face": "wants a user name and password (RTSP 401)",
        f"rtsp://viewer:s3cret-Pw@127.0.0.1:{free_port()}/face": "refused the connection: nothing listens",
        "rtsp://viewer:s3cret-Pw@camera.invalid/face": "does not resolve",
    }
    try:
        for url, expected in cases.items():
            with pytest.raises(SourceError) as e:
                RTSPSource(url, timeout_s=3).open()
            msg = str(e.value)
            assert expected in msg and "s3cret" not in msg and "WRONG-pw" not in msg, msg
        ok = RTSPSource(f"rtsp://viewer:s3cret-Pw@127.0.0.1:{port}/face", timeout_s=5)
        ok.open()  # the right URL still opens
        ok.close()
    finally:
        server.kill()
