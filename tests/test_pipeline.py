"""The camera loop survives frames it cannot process, and says so once, not per frame."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from edgeemo.aggregator import CameraAggregator
from edgeemo.config import AggregatorConfig, CameraConfig, TrackerConfig
from edgeemo.pipeline import CameraPipeline, Sink
from edgeemo.sources import Frame, FrameQueue
from edgeemo.tracker import IoUTracker


class BrokenDetector:
    def detect(self, frame: np.ndarray) -> list:
        raise RuntimeError("model exploded")


class IdleReader:
    def __init__(self) -> None:
        import threading

        self.finished = threading.Event()

    def mark_stalled(self, after_s: float) -> None:
        pass


def test_failing_frames_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    q = FrameQueue(depth=300)
    for i in range(250):
        q.put(Frame("cam", time.time(), np.zeros((48, 64, 3), np.uint8), i))
    p = CameraPipeline(
        CameraConfig(name="cam", source="x.mp4"),
        IdleReader(),
        q,
        BrokenDetector(),
        None,  # type: ignore[arg-type]
        IoUTracker(TrackerConfig()),
        CameraAggregator("cam", ["happy"], AggregatorConfig()),
        Sink(),
        60.0,
    )
    with caplog.at_level(logging.INFO):
        p.start()
        deadline = time.monotonic() + 10
        while p.errors < 250 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.is_alive()
        p.stop_event.set()
        p.join(2)
    assert p.errors == 250
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "camera cam" in tracebacks[0].getMessage()
    summaries = [
        r.getMessage() for r in caplog.records if "frames could not be processed so far" in r.getMessage()
    ]
    assert summaries == [
        "camera cam: 100 frames could not be processed so far (last: model exploded)",
        "camera cam: 200 frames could not be processed so far (last: model exploded)",
    ]
