"""The camera loop survives frames it cannot process, says so once, and ends visits at the end
of a stream without asking the reader (the queue says so)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ListSink

from edgeemo.analyzer import FaceModels, FrameAnalyzer
from edgeemo.camera_loop import CameraLoop
from edgeemo.config import Config
from edgeemo.sources import Frame, FrameQueue, StatusChange
from edgeemo.tools.devtools import demo_frames

CFG = Config.model_validate({"cameras": [{"name": "cam", "source": "x.mp4"}]})


class BrokenDetector:
    uses_regions = False

    def detect(self, frame: np.ndarray, regions: list | None = None) -> list:
        raise RuntimeError("model exploded")


def test_failing_frames_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    q = FrameQueue(depth=300)
    for i in range(250):  # 5 a second, as the reader hands them over at detect_fps 5
        q.put(Frame("cam", 1000.0 + i * 0.2, np.zeros((48, 64, 3), np.uint8), i))
    models = FaceModels(BrokenDetector(), SimpleNamespace(labels=["happy"]))  # type: ignore[arg-type]
    p = CameraLoop(FrameAnalyzer("cam", models, CFG), q, ListSink(), 60.0)
    with caplog.at_level(logging.INFO):
        p.start()
        deadline = time.monotonic() + 10
        while p.health.errors < 250 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.is_alive()
        p.stop_event.set()
        p.join(2)
    assert p.health.errors == 250
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "camera cam" in tracebacks[0].getMessage()
    summaries = [
        r.getMessage() for r in caplog.records if "frames could not be processed so far" in r.getMessage()
    ]
    assert summaries == [
        "camera cam: 100 frames could not be processed so far (last: model exploded)",
        "camera cam: 200 frames could not be processed so far (last: model exploded)",
    ]


def test_a_closed_queue_ends_the_visit_and_the_loop(models_dir: Path) -> None:
    frames = list(demo_frames(fps=5, seconds=10.0))
    # Frames up to the middle of the visit, then the clip ends with the face still in view.
    q = FrameQueue(depth=len(frames))
    for i, f in enumerate(frames[: len(frames) // 2]):
        q.put(Frame("cam", 1000.0 + i / 5, f, i))
    q.close()
    sink = ListSink()
    loop = CameraLoop(FrameAnalyzer.for_camera(CFG, "cam", models_dir), q, sink, 60.0)
    loop.start()
    loop.join(30)
    assert loop.finished()
    assert [e["event_type"] for e in sink.events] == ["face_entered", "face_left"]
    assert sink.states and sink.states[-1]["faces"] == 0  # the last state says nobody is in view


def test_camera_lost_mid_visit_ends_it_before_saying_offline(models_dir: Path) -> None:
    """The reader's offline travels behind its frames; the loop ends the visit first."""
    frames = list(demo_frames(fps=5, seconds=10.0))
    q = FrameQueue(depth=len(frames))
    q.put_status(StatusChange(True))
    for i, f in enumerate(frames[: len(frames) // 2]):
        q.put(Frame("cam", 1000.0 + i / 5, f, i))
    q.put_status(StatusChange(False, "stream broke"))
    sink = ListSink()
    loop = CameraLoop(FrameAnalyzer.for_camera(CFG, "cam", models_dir), q, sink, 60.0)
    loop.start()
    deadline = time.monotonic() + 30
    while "status:offline" not in sink.order and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop.is_alive()  # a lost camera is retried, its loop goes on
    assert sink.order[0] == "status:online"
    tail = sink.order[sink.order.index("event:face_left") :]
    assert tail == ["event:face_left", "state:0", "status:offline"], sink.order
    q.close()
    loop.join(5)
    assert sink.order[-1] == "status:offline" and sink.order.count("status:offline") == 1


def test_a_stopped_loop_ends_its_visits_even_if_its_reader_hangs(models_dir: Path) -> None:
    frames = list(demo_frames(fps=5, seconds=10.0))
    q = FrameQueue(depth=len(frames))
    t0 = time.time()  # real time: idle rounds must not age the face out before the stop
    for i, f in enumerate(frames[: len(frames) // 2]):
        q.put(Frame("cam", t0 + i / 5, f, i))
    sink = ListSink()
    loop = CameraLoop(FrameAnalyzer.for_camera(CFG, "cam", models_dir), q, sink, 60.0)
    loop.start()
    deadline = time.monotonic() + 30
    while "event:face_entered" not in sink.order and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop_event.set()  # no END, no offline from the reader: as on SIGTERM with a hung camera
    loop.join(10)
    assert sink.order[-3:] == ["event:face_left", "state:0", "status:offline"], sink.order


def test_a_face_is_seen_at_a_detect_fps_under_two(models_dir: Path) -> None:
    """At detect_fps 1 frames come a second apart, longer than the loop waits before it lets
    faces age on the clock: waiting is no evidence a face left, so a face seen once stays
    until it is seen again (it used to be dropped, and no face ever entered)."""
    cfg = Config.model_validate({"cameras": [{"name": "cam", "source": "x.mp4", "detect_fps": 1}]})
    frames = list(demo_frames(fps=1, seconds=10.0))
    q = FrameQueue(depth=1)
    sink = ListSink()
    loop = CameraLoop(FrameAnalyzer.for_camera(cfg, "cam", models_dir), q, sink, 60.0)
    loop.start()
    try:
        for i, f in enumerate(frames[2:6]):  # the visitor's frames, as the reader hands them over
            q.put(Frame("cam", time.monotonic(), f, i))
            time.sleep(1.0)
    finally:
        loop.stop_event.set()
        loop.join(5)
    assert "face_entered" in [e["event_type"] for e in sink.events]
