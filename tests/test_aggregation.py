"""Tracker and aggregator: a steady face makes a handful of events, not one per frame."""

from __future__ import annotations

import numpy as np

from edgeemo.aggregator import NO_FACE, CameraAggregator, Observation
from edgeemo.config import AggregatorConfig, TrackerConfig
from edgeemo.detectors import Detection
from edgeemo.tracker import IoUTracker

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def probs(label: str, p: float = 0.8) -> np.ndarray:
    v = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1), np.float32)
    v[LABELS.index(label)] = p
    return v


class Scene:
    """Feeds the tracker and aggregator like the pipeline does, at 5 fps."""

    def __init__(self, **agg: float) -> None:
        self.tracker = IoUTracker(TrackerConfig())
        self.agg = CameraAggregator("cam", LABELS, AggregatorConfig(**agg))
        self.ts = 1000.0
        self.events: list[dict] = []

    def step(self, faces: list[tuple[list[float], np.ndarray]], score: float = 0.9) -> None:
        self.ts += 0.2
        dets = [Detection(np.array(box, np.float32), score) for box, _ in faces]
        matched, ended = self.tracker.match(self.ts, dets)
        obs = [Observation(t, faces[i][1], dets[i].score, dets[i].size) for t, i in matched]
        self.events += self.agg.observe(self.ts, obs, ended)

    def types(self) -> list[str]:
        return [e["event_type"] for e in self.events]


def test_steady_face_gives_enter_and_leave_only() -> None:
    s = Scene()
    rng = np.random.default_rng(1)
    for _ in range(150):  # 30 s of a happy face with noisy per-frame scores
        p = probs("happy", 0.7) + rng.uniform(0, 0.25, len(LABELS)).astype(np.float32)
        s.step([([100 + rng.uniform(-3, 3), 100, 90, 90], p / p.sum())])
    assert s.types() == ["face_entered"]
    assert s.agg.state(s.ts)["faces"] == 1 and s.agg.state(s.ts)["dominant_emotion"] == "happy"
    for _ in range(15):
        s.step([])
    assert s.types() == ["face_entered", "face_left"]
    left = s.events[-1]
    assert left["emotion"] == "happy" and left["dominant_emotion"] == "happy"
    assert 29 < left["duration"] < 31
    assert s.agg.state(s.ts)["faces"] == 0 and s.agg.state(s.ts)["dominant_emotion"] == NO_FACE


def test_emotion_change_needs_dwell_and_flickers_do_not_count() -> None:
    s = Scene(dwell_s=2.0)
    box = [50, 50, 100, 100]
    for _ in range(20):
        s.step([(box, probs("neutral"))])
    for _ in range(3):  # 0.6 s of surprise: a flicker
        s.step([(box, probs("surprise", 0.95))])
    for _ in range(10):
        s.step([(box, probs("neutral"))])
    assert s.types() == ["face_entered"]
    for _ in range(30):  # 6 s of a real smile
        s.step([(box, probs("happy", 0.9))])
    assert s.types() == ["face_entered", "emotion_changed"]
    ch = s.events[-1]
    assert ch["emotion"] == "happy" and ch["previous_emotion"] == "neutral"
    assert set(ch) >= {"id", "track_id", "confidence", "scores", "duration", "ts", "type"}


def test_two_faces_keep_their_track_ids() -> None:
    s = Scene()
    for i in range(20):
        s.step([([10 + i, 10, 80, 80], probs("happy")), ([300 - i, 40, 80, 80], probs("sad"))])
    entered = [e for e in s.events if e["event_type"] == "face_entered"]
    assert sorted((e["track_id"], e["emotion"]) for e in entered) == [(1, "happy"), (2, "sad")]
    assert s.agg.state(s.ts)["faces"] == 2


def test_single_frame_miss_does_not_flap_faces_in_view() -> None:
    s = Scene()
    for i in range(30):
        s.step([([100, 100, 90, 90], probs("happy"))] if i % 7 else [])
        if i > 5:
            assert s.agg.state(s.ts)["faces"] == 1
    assert s.types() == ["face_entered"]


def test_small_low_score_faces_move_the_average_less() -> None:
    big, small = Scene(), Scene()
    for sc, size, score in ((big, 120, 0.95), (small, 24, 0.55)):
        for _ in range(5):
            sc.step([([10, 10, size, size], probs("neutral"))], score=score)
        sc.step([([10, 10, size, size], probs("angry", 0.99))], score=score)
    ema = {name: sc.agg._moods[1].ema[LABELS.index("angry")] for name, sc in (("big", big), ("small", small))}
    assert ema["small"] < ema["big"]


def test_flicker_detection_never_announced() -> None:
    s = Scene()
    s.step([([10, 10, 80, 80], probs("happy"))])  # one frame only: below min_hits
    for _ in range(20):
        s.step([])
    assert s.events == []


def test_each_state_value_agrees_with_its_own_scores() -> None:
    """dominant_emotion goes with `emotions` (faces in view now), window_dominant_emotion with
    `distribution` (the window): never a state `happy` whose attributes say angry."""
    s = Scene(window_s=10.0)
    box = [50, 50, 100, 100]
    seen: list[dict] = []
    for label, steps in (("angry", 40), ("happy", 15), (None, 80)):
        for _ in range(steps):
            s.step([(box, probs(label, 0.9))] if label else [])
            seen.append(s.agg.state(s.ts))
    for st in seen:
        now, window = st["emotions"], st["distribution"]
        if st["faces"]:
            assert st["dominant_emotion"] == max(now, key=now.get), st
        else:
            assert st["dominant_emotion"] == NO_FACE and not any(now.values()), st
        if any(window.values()):
            assert st["window_dominant_emotion"] == max(window, key=window.get), st
        else:
            assert st["window_dominant_emotion"] == NO_FACE, st
    # The two meanings differ where they should: a smile now after a long frown in the window.
    assert any(st["dominant_emotion"] == "happy" and st["window_dominant_emotion"] == "angry" for st in seen)
    assert seen[-1]["window_dominant_emotion"] == NO_FACE  # the window has forgotten the visit
