"""A security-camera clip in which people walk up to the camera, with the true face boxes.

Used by ``tests/test_approach_clip.py`` (the daemon's events) and ``scripts/approach_bench.py``
(recall by face size and cost per frame, with and without the region approach). The face is
scikit-image's astronaut (public domain); the second person is her mirror image coming from the
other side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeemo.tools.devtools import astronaut_bgr, empty_room

HEAD = (slice(20, 260), slice(150, 390))  # the astronaut's head in skimage's picture
FACE_IN_HEAD = (0.10, 0.21, 0.41, 0.45)  # her face (x, y, w, h) in that crop, as BlazeFace boxes it


@dataclass(frozen=True)
class Walk:
    seconds: float = 7.0  # each walk-up
    gap_s: float = 3.0  # then an empty room, longer than tracker.max_age_s (2 s)
    far_px: float = 14.0  # face width at the start of a walk-up
    near_px: float = 120.0  # and at its end (in a 1920-wide frame; scaled with the frame)
    people: int = 2
    lead_s: float = 1.0  # empty room before the first

    def face_px(self, t: float) -> float:
        """Face width t seconds into a walk-up: it grows as the distance shrinks (1/d)."""
        return self.far_px * self.near_px / (self.near_px - (self.near_px - self.far_px) * t / self.seconds)


def approach_frames(
    size: tuple[int, int] = (1920, 1080), fps: float = 10.0, walk: Walk = Walk()
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(frame, true face box x, y, w, h or None) for each frame."""
    w, h = size
    k = w / 1920  # a bigger frame from the same camera position: everything scales
    room = empty_room(w, h)
    rng = np.random.default_rng(3)
    heads = [astronaut_bgr()[HEAD], cv2.flip(astronaut_bgr()[HEAD], 1)]
    plan: list[tuple[int, float] | None] = [None] * round(walk.lead_s * fps)
    for who in range(walk.people):
        plan += [(who, i / fps) for i in range(round(walk.seconds * fps))]
        plan += [None] * round(walk.gap_s * fps)
    for step in plan:
        frame = room.copy()
        box = None
        if step is not None:
            who, t = step
            side = round(walk.face_px(t) * k / FACE_IN_HEAD[2])
            head = cv2.resize(heads[who % 2], (side, side), interpolation=cv2.INTER_AREA)
            # A slow walk towards the camera and across: one from the left, the next from the right.
            cx = (500 + 60 * t if who % 2 == 0 else 1400 - 60 * t) * k
            x, y = round(cx - side / 2), round(420 * k - side / 3)
            frame[y : y + side, x : x + side] = head
            fx = FACE_IN_HEAD[0] if who % 2 == 0 else 1 - FACE_IN_HEAD[0] - FACE_IN_HEAD[2]
            box = np.array(
                [x + fx * side, y + FACE_IN_HEAD[1] * side, FACE_IN_HEAD[2] * side, FACE_IN_HEAD[3] * side],
                np.float32,
            )
        noise = rng.integers(-3, 4, frame.shape, dtype=np.int16)
        yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8), box


def make_approach_clip(
    path: Path, size: tuple[int, int] = (1920, 1080), fps: float = 10.0, walk: Walk = Walk()
) -> list[np.ndarray | None]:
    """Write the clip (MPEG-4 part 2, as a camera's recording would be H.264) and return the
    true face box of each frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    truth = []
    for frame, box in approach_frames(size, fps, walk):
        writer.write(frame)
        truth.append(box)
    writer.release()
    return truth
