"""The motion gate skips only what cannot hold a new face, and changes no event."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import ListSink

from edgeemo.aggregator import CameraAggregator
from edgeemo.classifier import EmotionClassifier
from edgeemo.config import CameraConfig, Config, MotionConfig
from edgeemo.detector import FaceDetector
from edgeemo.devtools import astronaut_bgr, demo_frames
from edgeemo.modelstore import open_model, resolve
from edgeemo.motion import MotionGate
from edgeemo.pipeline import CameraPipeline
from edgeemo.tracker import IoUTracker


def _room(rng: np.random.Generator) -> np.ndarray:
    base = np.full((480, 640, 3), 90, np.int16) + rng.integers(-4, 5, (480, 640, 3), dtype=np.int16)
    return np.clip(base, 0, 255).astype(np.uint8)


def test_still_noisy_scene_is_skipped_and_a_face_is_not() -> None:
    rng = np.random.default_rng(0)
    gate = MotionGate(MotionConfig())
    assert not gate.static(_room(rng), 0.0)  # the first frame is always analysed
    assert all(gate.static(_room(rng), 0.1 * i) for i in range(1, 15))  # sensor noise is not motion
    frame = _room(rng)
    frame[100:196, 200:296] = cv2.resize(astronaut_bgr()[0:300, 110:410], (96, 96))  # someone steps in
    assert not gate.static(frame, 1.6)
    assert gate.static(frame, 1.7)  # then the new picture is the reference


def test_a_still_scene_is_still_analysed_every_max_skip_s() -> None:
    rng = np.random.default_rng(1)
    gate = MotionGate(MotionConfig(max_skip_s=1.0))
    analysed = [not gate.static(_room(rng), 0.25 * i) for i in range(12)]  # 3 s at 4 fps
    assert analysed == [True, False, False, False] * 3


def _events(models_dir: Path, gate: MotionGate | None, steady_every: int = 1) -> tuple[list[tuple], int]:
    """(event_type, track, emotion, ts) for the demo clip at 5 fps, and the frames not analysed."""
    cfg = Config.model_validate(
        {"cameras": [{"name": "c", "source": "x"}], "tracker": {"steady_every": steady_every}}
    )
    dm = resolve(cfg.detector.model, models_dir, "face_detection")
    em = resolve(cfg.emotion.model, models_dir, "emotion")
    sink = ListSink()
    pipe = CameraPipeline(
        CameraConfig(name="c", source="x"), None, None,  # type: ignore[arg-type]
        FaceDetector(open_model(dm, cfg.inference, "d"), dm.manifest, cfg.detector),
        EmotionClassifier(open_model(em, cfg.inference, "e"), em.manifest, cfg.emotion.crop_margin),
        IoUTracker(cfg.tracker), CameraAggregator("c", em.manifest.labels or [], cfg.aggregator),
        sink, 60.0, gate,
    )  # fmt: skip
    for i, frame in enumerate(demo_frames(fps=5, seconds=16.0)):
        pipe.process(frame, 1000.0 + i / 5)
    return [
        (e["event_type"], e["track_id"], e["emotion"], round(e["ts"], 1)) for e in sink.events
    ], pipe.skipped


def test_events_are_the_same_with_and_without_the_gate(models_dir: Path) -> None:
    gate = MotionGate(MotionConfig())
    (with_gate, _), (without, _) = _events(models_dir, gate), _events(models_dir, None)
    assert with_gate == without and [e[0] for e in without] == ["face_entered", "face_left"]
    assert gate.skipped >= 10  # the empty room before and after the visit was not analysed


def test_still_faces_analysed_every_other_frame_give_the_same_events(models_dir: Path) -> None:
    every, skipped = _events(models_dir, None, steady_every=1)
    assert skipped == 0
    other, skipped = _events(models_dir, None, steady_every=2)
    assert skipped >= 15  # about half the frames with the face in view
    assert [e[:3] for e in other] == [e[:3] for e in every]
    assert all(abs(a[3] - b[3]) <= 0.2 for a, b in zip(other, every, strict=True))  # within one frame
