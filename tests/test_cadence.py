"""detect_fps: the reader and the analyzer pick the same frames, at the configured rate."""

from __future__ import annotations

import random

import pytest

from edgeemo.cadence import Cadence


def passed(fps: float, stamps: list[float]) -> list[float]:
    c = Cadence(fps)
    return [t for t in stamps if c.due(t)]


@pytest.mark.parametrize(("camera_fps", "every"), [(15, 3), (30, 6), (25, 5), (10, 2), (5, 1)])
def test_common_stream_rates_give_exactly_detect_fps(camera_fps: int, every: int) -> None:
    stamps = [i / camera_fps for i in range(camera_fps * 60)]
    assert passed(5.0, stamps) == stamps[::every]


def test_a_slow_camera_keeps_the_average_rate() -> None:
    stamps = [i / 6 for i in range(6 * 60)]  # 6 fps: neither every frame nor every second one
    n = len(passed(5.0, stamps))
    assert 295 <= n <= 301


def test_the_analyzer_passes_every_frame_the_reader_handed_over() -> None:
    rng = random.Random(1)
    stamps, t = [], 100.0
    for _ in range(3000):  # 15 fps with network jitter and the odd burst after a stall
        t += max(0.001, rng.gauss(1 / 15, 0.02)) + (1.5 if rng.random() < 0.005 else 0.0)
        stamps.append(t)
    handed = passed(5.0, stamps)
    seconds = stamps[-1] - stamps[0]
    assert 4 * seconds <= len(handed) <= 5 * seconds + 1  # ~5 a second of ~15
    assert passed(5.0, handed) == handed


def test_a_clock_that_goes_back_starts_afresh() -> None:
    c = Cadence(5.0)
    assert c.due(10.0) and not c.due(10.1)
    assert c.due(0.0)  # a clip looping in a test harness, timestamps from 0 again
    assert not c.due(0.05) and c.due(0.2)


def test_the_analyzer_caps_a_harness_but_not_the_daemons_reader(models_dir) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from edgeemo.analyzer import FrameAnalyzer
    from edgeemo.config import Config

    cfg = Config.model_validate({"cameras": [{"name": "c", "source": "x.mp4"}]})  # detect_fps 5
    frame = np.zeros((48, 64, 3), np.uint8)
    harness = FrameAnalyzer.for_camera(cfg, "c", models_dir)
    for i in range(15):  # one second of a 15 fps clip, every frame offered
        harness.process(frame, i / 15)
    assert harness.capped == 10
    daemon = FrameAnalyzer.for_camera(cfg, "c", models_dir)
    for i in range(4):  # the reader's frames, one dropped by its queue in between
        daemon.process(frame, [0.0, 0.2, 0.6, 0.8][i], paced=True)
    assert daemon.capped == 0
