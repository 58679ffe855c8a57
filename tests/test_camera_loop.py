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
from edgeemo.sources import Frame, FrameQueue
from edgeemo.tools.devtools import demo_frames

CFG = Config.model_validate({"cameras": [{"name": "cam", "source": "x.mp4"}]})


class BrokenDetector:
    def detect(self, frame: np.ndarray, regions: list | None = None) -> list:
        raise RuntimeError("model exploded")


def test_failing_frames_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    q = FrameQueue(depth=300)
    for i in range(250):
        q.put(Frame("cam", time.time(), np.zeros((48, 64, 3), np.uint8), i))
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
