"""Masks and zones per camera: polygons checked on load, faces in a mask never analysed or
counted, motion in a mask ignored, zones named in events and states."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.analyzer import FrameAnalyzer
from edgeemo.config import Config, ConfigError, MotionConfig, parse_config
from edgeemo.motion import MotionGate
from edgeemo.tools.devtools import astronaut_bgr, empty_room
from edgeemo.zones import CameraZones

FACE_AT = (200, 120)  # where the astronaut's head goes in a 640x480 room
HEAD = 200


def _frame() -> np.ndarray:
    room = empty_room(640, 480)
    head = cv2.resize(astronaut_bgr()[20:260, 150:390], (HEAD, HEAD), interpolation=cv2.INTER_AREA)
    x, y = FACE_AT
    room[y : y + HEAD, x : x + HEAD] = head
    return room


def _square(x: int, y: int, side: int) -> list[list[int]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]


def _cfg(**camera: object) -> Config:
    return Config.model_validate({"cameras": [{"name": "lounge", "source": "x.mp4", **camera}]})


@pytest.mark.parametrize(
    ("polygon", "says"),
    [
        ([[0, 0], [10, 10]], "at least 3 points"),
        ([[0, 0], [5, 5], [10, 10]], "encloses no area"),
        ([[-5, 0], [10, 0], [10, 10]], "no negative x or y"),
        ([[0, 0], [10, 0], "ten"], "(lounge).masks[0][2]"),
    ],
)
def test_a_bad_polygon_stops_the_config_naming_camera_and_key(polygon: list, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"cameras": [{"name": "lounge", "source": "x.mp4", "masks": [polygon]}]})
    assert says in str(err.value) and "lounge" in str(err.value)


def test_a_zone_name_must_be_topic_safe() -> None:
    with pytest.raises(ConfigError, match="lounge"):
        parse_config({"cameras": [{"name": "lounge", "source": "x", "zones": {"a b": _square(0, 0, 9)}}]})


def test_a_face_inside_a_mask_is_never_analysed_or_counted(models_dir: Path) -> None:
    frame = _frame()
    open_ = FrameAnalyzer.for_camera(_cfg(), "lounge", models_dir)
    masked = FrameAnalyzer.for_camera(_cfg(masks=[_square(150, 80, 300)]), "lounge", models_dir)
    events_open, events_masked = [], []
    for i in range(8):
        events_open += open_.process(frame.copy(), i * 0.2).events
        events_masked += masked.process(frame.copy(), i * 0.2).events
    assert [e["type"] for e in events_open] == ["face_entered"]  # the face is there to be found
    assert events_masked == [] and masked.tracker.tracks == [] and masked.masked >= 1
    assert masked.state(2.0)["faces"] == 0


def test_a_mask_elsewhere_changes_nothing(models_dir: Path) -> None:
    frame = _frame()
    a = FrameAnalyzer.for_camera(_cfg(masks=[_square(0, 0, 100)]), "lounge", models_dir)
    events = [e for i in range(8) for e in a.process(frame.copy(), i * 0.2).events]
    assert [e["type"] for e in events] == ["face_entered"] and a.masked == 0


def test_zones_name_where_the_face_is_in_events_and_state(models_dir: Path) -> None:
    frame = _frame()
    cfg = _cfg(zones={"sofa": _square(150, 80, 300), "door": _square(500, 0, 100)})
    a = FrameAnalyzer.for_camera(cfg, "lounge", models_dir)
    events = [e for i in range(8) for e in a.process(frame.copy(), i * 0.2).events]
    assert [(e["type"], e["zones"]) for e in events] == [("face_entered", ["sofa"])]
    assert a.state(1.6)["zones"] == {"sofa": 1}
    left = a.end(2.0)
    assert [(e["type"], e["zones"]) for e in left] == [("face_left", ["sofa"])]
    assert a.state(2.0)["zones"] == {}


def test_motion_inside_a_mask_does_not_wake_the_detector() -> None:
    room = empty_room(640, 480)
    tv_on = room.copy()
    tv_on[40:200, 420:620] = 255  # a television lighting up in the corner
    zones = CameraZones("lounge", [_square(400, 20, 240)], {})
    gate = MotionGate(MotionConfig())
    gate.analysed(room, 0.0)
    assert not gate.unchanged(tv_on, 0.5)  # without the mask the TV is motion
    assert gate.moving_regions(tv_on)
    gate.ignore = zones.motion_ignore((640, 480), (64, 48))
    assert gate.unchanged(tv_on, 0.5) and gate.moving_regions(tv_on) == []
    walk_in = tv_on.copy()
    walk_in[200:460, 40:200] = 30  # someone coming in outside the mask still counts
    assert not gate.unchanged(walk_in, 0.6)


def test_a_polygon_past_the_frame_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    zones = CameraZones("lounge", [_square(0, 0, 100)], {"porch": _square(1800, 900, 100)})
    with caplog.at_level(logging.WARNING, logger="edgeemo.zones"):
        zones.frame_size(640, 480)
        zones.frame_size(640, 480)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "camera lounge: zone 'porch' reaches past the 640x480 frame" in said[0]
