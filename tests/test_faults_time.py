"""Issue 17.10: durations come from a monotonic clock; event timestamps stay wall-clock.

A Raspberry Pi without an RTC boots with a stale clock and NTP steps it, often backwards after
a fake-hwclock restore. Tracking on the wall clock then withheld ``face_left`` for as long as
the step (an hour), and durations came out negative."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import ListSink

from edgeemo.analyzer import FrameAnalyzer
from edgeemo.camera_loop import CameraLoop
from edgeemo.config import Config
from edgeemo.sources import CameraReader, FrameQueue, make_source
from edgeemo.tools.devtools import make_demo_clip

STEP_S = 3600.0


def test_a_wall_clock_step_back_neither_withholds_face_left_nor_bends_durations(
    tmp_path: Path, models_dir: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    clip = make_demo_clip(tmp_path / "visit.mp4", fps=15, seconds=10.0)
    cfg = Config.model_validate({"cameras": [{"name": "c", "source": str(clip), "loop": True}]})
    real_time, t0 = time.time, time.time()
    stepped = False

    def wall() -> float:  # NTP steps the clock back an hour, 3 s after start (mid-visit)
        nonlocal stepped
        stepped = stepped or real_time() - t0 > 3.0
        return real_time() - (STEP_S if stepped else 0.0)

    monkeypatch.setattr(time, "time", wall)
    queue, sink = FrameQueue(depth=2), ListSink()
    reader = CameraReader("c", make_source(cfg.cameras[0]), 5.0, queue)
    loop = CameraLoop(FrameAnalyzer.for_camera(cfg, "c", models_dir), queue, sink, 60.0)
    reader.start()
    loop.start()
    try:
        deadline = real_time() + 25  # the clip loops: a face enters and leaves every 10 s
        while real_time() < deadline and [e["event_type"] for e in sink.events].count("face_left") < 2:
            time.sleep(0.2)
    finally:
        reader.stop_event.set()
        loop.stop_event.set()
        reader.join(5)
        loop.join(5)
    kinds = [e["event_type"] for e in sink.events]
    assert kinds.count("face_left") >= 2, kinds  # before: the visit never ended (for an hour)
    for e in sink.events:
        assert 0 <= e["duration"] < 30, e  # monotonic durations
    after = [e for e in sink.events if e["ts"] < t0]  # stamped after the step: the new wall clock
    assert after and all(abs(e["ts"] - (wall())) < 30 for e in after)
    assert all(abs(s["ts"] - wall()) < 60 for s in sink.states[-3:])
