"""Issue 15: the daemon's events on a 1080p clip in which people walk up to the camera.

A real MPEG-4 file through the real daemon (file source at the clip's own frame rate, the
default auto detector, a real Mosquitto): each person is found while their face is still too
small to read (counted as an unreadable face in the state), ``face_entered`` comes once the
face is readable, and each person makes one visit however much their face grows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeemo.modelstore import catalog
from edgeemo.tools.approach import Walk, make_approach_clip
from tests.conftest import DaemonProcess, Recorder

READABLE_PX = 32  # emotion.min_face_px's default


@pytest.fixture
def yunet(models_dir: Path) -> None:
    if not (models_dir / catalog()["yunet"].file).is_file():
        pytest.skip("YuNet is not installed: no internet and no ../shared/models/yunet copy here")


def test_two_people_walk_up_one_visit_each_entered_when_readable(
    tmp_path: Path, recorder: Recorder, broker: int, daemon, yunet: None
) -> None:  # type: ignore[no-untyped-def]
    walk = Walk()  # two walk-ups from 14 to 120 px, 7 s each, 3 s of empty room after each
    truth = make_approach_clip(tmp_path / "hall.mp4", (1920, 1080), fps=10.0, walk=walk)
    d: DaemonProcess = daemon("--source", str(tmp_path / "hall.mp4"), "--mqtt", f"mqtt://127.0.0.1:{broker}")
    # The clip plays in real time (21 s) and the daemon stops when it ends.
    assert d.proc.wait(90) == 0, d.log

    events = recorder.json_on("/hall/event")
    kinds = [(e["event_type"], e["track_id"]) for e in events]
    assert [k for k, _ in kinds] == ["face_entered", "face_left", "face_entered", "face_left"], kinds
    (_, a), (_, a_left), (_, b), (_, b_left) = kinds
    assert a == a_left and b == b_left and a != b  # one visit per person, not one per face size
    widest = max(float(t[2]) for t in truth if t is not None)
    for e in (events[0], events[2]):
        # Readable when it entered, and entered soon after it became readable: by then the face
        # grows ~3 px per analysed frame, and two sightings confirm it. BlazeFace alone (the old
        # default) first sees this face at ~100 px.
        assert READABLE_PX <= min(e["box"][2:]) <= 56 < widest, e["box"]
        assert e["emotion"] is not None

    # Found while too small to read: counted as a face, no emotion, before it entered.
    states = recorder.json_on("/hall/state")
    readable = [i for i, s in enumerate(states) if s["faces"] > s["unreadable_faces"]]
    assert readable, states
    before = states[: readable[0]]
    assert any(s["faces"] == 1 and s["unreadable_faces"] == 1 for s in before), before
