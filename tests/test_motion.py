"""The motion gate skips only what cannot hold a new face, and changes no event."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeemo.analyzer import FrameAnalyzer
from edgeemo.config import Config, MotionConfig
from edgeemo.motion import MotionGate
from edgeemo.tools.devtools import astronaut_bgr, demo_frames


def _room(rng: np.random.Generator) -> np.ndarray:
    base = np.full((480, 640, 3), 90, np.int16) + rng.integers(-4, 5, (480, 640, 3), dtype=np.int16)
    return np.clip(base, 0, 255).astype(np.uint8)


def _check(gate: MotionGate, frame: np.ndarray, ts: float, faces: dict | None = None) -> bool:
    """What the pipeline does: ask the gate; if the frame is analysed, it becomes the reference."""
    if gate.unchanged(frame, ts, faces):
        return False
    gate.analysed(frame, ts, faces)
    return True


def _with_face(rng: np.random.Generator, face: np.ndarray, at: tuple[int, int] = (100, 200)) -> np.ndarray:
    frame = _room(rng)
    y, x = at
    frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


def test_still_noisy_scene_is_skipped_and_a_face_is_not() -> None:
    rng = np.random.default_rng(0)
    gate = MotionGate(MotionConfig())
    assert _check(gate, _room(rng), 0.0)  # the first frame is always analysed
    assert not any(_check(gate, _room(rng), 0.1 * i) for i in range(1, 15))  # sensor noise is not motion
    frame = _with_face(rng, cv2.resize(astronaut_bgr()[0:300, 110:410], (96, 96)))  # someone steps in
    assert _check(gate, frame, 1.6)
    assert not _check(gate, frame, 1.7)  # then the new picture is the reference


def test_a_still_scene_is_still_analysed_every_max_skip_s() -> None:
    rng = np.random.default_rng(1)
    gate = MotionGate(MotionConfig(max_skip_s=1.0))
    analysed = [_check(gate, _room(rng), 0.25 * i) for i in range(12)]  # 3 s at 4 fps
    assert analysed == [True, False, False, False] * 3


def test_a_still_face_is_skipped_but_a_changed_expression_is_not() -> None:
    """A smile on an 80 px face is a few thumbnail pixels: the per-face patch must see it."""
    rng = np.random.default_rng(2)
    gate = MotionGate(MotionConfig())
    face = cv2.resize(astronaut_bgr()[30:230, 160:360], (80, 80))
    box = np.array([200.0, 100.0, 80.0, 80.0])  # x, y, w, h of the face in _with_face
    assert _check(gate, _with_face(rng, face), 0.0, {1: box})
    assert not any(_check(gate, _with_face(rng, face), 0.1 * i, {1: box}) for i in range(1, 10))
    mouth = face.copy()
    mouth[54:64, 28:52] = np.clip(mouth[54:64, 28:52].astype(np.int16) - 40, 0, 255).astype(np.uint8)
    whole = MotionGate(MotionConfig())  # the same frames with no face tracked: only the thumbnail
    whole.analysed(_with_face(rng, face), 0.0)
    assert whole.unchanged(_with_face(rng, mouth), 0.1)  # too small a change for the 64x48 thumbnail
    assert _check(gate, _with_face(rng, mouth), 1.0, {1: box})  # but the face patch sees it
    assert not _check(gate, _with_face(rng, mouth), 1.1, {1: box})
    assert _check(gate, _with_face(rng, mouth), 1.2, {2: box})  # another track: always analysed
    assert _check(gate, _with_face(rng, mouth), 1.3, {2: box, 3: box + 100})  # a face more


def test_a_face_the_detector_missed_is_looked_for_again_unless_it_left() -> None:
    rng = np.random.default_rng(4)
    face = cv2.resize(astronaut_bgr()[30:230, 160:360], (80, 80))
    box = {1: np.array([200.0, 100.0, 80.0, 80.0])}
    for still_there in (True, False):
        gate = MotionGate(MotionConfig())
        gate.analysed(_with_face(rng, face), 0.0, box, seen={1})
        frame = _with_face(rng, face) if still_there else _room(rng)
        gate.analysed(frame, 0.1, box, seen=set())  # the detector found nothing this time
        # Still there: a flicker, so analyse again rather than let the face age out unseen.
        # Gone: nothing to look for; the track ages out while the empty scene is skipped.
        assert gate.unchanged(frame, 0.2, box) is (not still_there)


def _run(
    models_dir: Path, frames, gate: MotionGate | None, steady_every: int = 1
) -> tuple[list[tuple], FrameAnalyzer, list[dict]]:
    """(event_type, track, emotion, ts) for frames at 5 fps, the analyzer and its raw events."""
    cfg = Config.model_validate(
        {"cameras": [{"name": "c", "source": "x"}], "tracker": {"steady_every": steady_every}}
    )
    analyzer = FrameAnalyzer.for_camera(cfg, "c", models_dir)
    analyzer.gate = gate  # the test's own gate (or none), to count what it skipped
    raw: list[dict] = []
    for i, frame in enumerate(frames):
        raw += analyzer.process(frame, 1000.0 + i / 5).events
    events = [(e["event_type"], e["track_id"], e["emotion"], round(e["ts"], 1)) for e in raw]
    return events, analyzer, raw


def _events(models_dir: Path, gate: MotionGate | None, steady_every: int = 1) -> tuple[list[tuple], int]:
    events, pipe, _ = _run(models_dir, demo_frames(fps=5, seconds=16.0), gate, steady_every)
    return events, pipe.skipped


def test_events_are_the_same_with_and_without_the_gate(models_dir: Path) -> None:
    gate = MotionGate(MotionConfig())
    (with_gate, _), (without, _) = _events(models_dir, gate), _events(models_dir, None)
    assert with_gate == without and [e[0] for e in without] == ["face_entered", "face_left"]
    assert gate.skipped >= 10  # the empty room before and after the visit was not analysed


def _sitting(seconds: float = 14.0, fps: int = 5) -> list[np.ndarray]:
    """Empty room 1 s, someone sits still 5 s, then someone else (the face mirrored, a little to
    the side) 5 s, then the empty room again."""
    rng = np.random.default_rng(3)
    face = cv2.resize(astronaut_bgr()[0:300, 110:410], (240, 240))
    frames = []
    for i in range(int(seconds * fps)):
        t = i / fps
        shown = None if t < 1 or t >= 11 else face if t < 6 else cv2.flip(face, 1)
        frames.append(_room(rng) if shown is None else _with_face(rng, shown, (120, 200)))
    return frames


def test_someone_sitting_still_is_not_reanalysed_and_events_do_not_change(models_dir: Path) -> None:
    frames = _sitting()
    without, pipe0, raw0 = _run(models_dir, frames, None)
    gate = MotionGate(MotionConfig())
    with_gate, pipe, raw = _run(models_dir, frames, gate)
    assert [e[0] for e in without] == ["face_entered", "face_entered", "face_left", "face_left"]
    assert with_gate == without
    # Most frames of the still face were skipped (analysed every max_skip_s, 2 s); the frames
    # where the picture changed were not: faces appearing, swapping and leaving.
    assert pipe0.skipped == 0 and gate.skipped >= 35
    assert len(frames) - pipe.skipped <= 30
    # The smoothed scores, and the visit's dominant emotion, are what analysing every frame gives.
    for e0, e in zip(raw0, raw, strict=True):
        assert max(abs(e0["scores"][k] - e["scores"][k]) for k in e0["scores"]) < 0.02, (e0, e)
        assert e0.get("dominant_emotion") == e.get("dominant_emotion")


def test_still_faces_analysed_every_other_frame_give_the_same_events(models_dir: Path) -> None:
    every, skipped = _events(models_dir, None, steady_every=1)
    assert skipped == 0
    other, skipped = _events(models_dir, None, steady_every=2)
    assert skipped >= 15  # about half the frames with the face in view
    assert [e[:3] for e in other] == [e[:3] for e in every]
    assert all(abs(a[3] - b[3]) <= 0.2 for a, b in zip(other, every, strict=True))  # within one frame


def test_the_gate_keeps_no_frame() -> None:
    """Only thumbnails and face patches stay between frames: no frame per camera held."""
    import gc
    import weakref

    rng = np.random.default_rng(3)
    gate = MotionGate(MotionConfig())
    frames = [_room(rng) for _ in range(3)]
    refs = [weakref.ref(f) for f in frames]
    _check(gate, frames[0], 0.0)  # analysed: the reference
    gate.moving_regions(frames[1])
    _check(gate, frames[1], 0.1)  # skipped (sensor noise)
    gate.moving_regions(frames[2])
    gate.analysed(frames[2], 0.2)
    del frames
    gc.collect()
    assert all(r() is None for r in refs)
    assert not _check(gate, _room(rng), 0.3)  # and it still compares against the reference
