"""Masks and zones: polygons in a camera's frame coordinates (Frigate users' habit).

A face whose centre lies inside a *mask* is never analysed or counted (a television showing
films, a neighbour's window), and motion inside a mask does not wake the detector. *Zones*
only name places: events and states say which zones a face is in (a face may be in several).
Polygons are checked against themselves when the config loads; against the frame only here,
when the first frame arrives: a polygon that reaches past it is said once, in the log.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

Polygon = list[tuple[float, float]]


def _contour(points: Polygon) -> np.ndarray:
    return np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)


class CameraZones:
    """One camera's masks and zones. Cheap when a camera has none (the usual case)."""

    def __init__(self, camera: str, masks: list[Polygon], zones: dict[str, Polygon]) -> None:
        self.camera = camera
        self._masks = [_contour(p) for p in masks]
        self._zones = {name: _contour(p) for name, p in zones.items()}
        self._raw = {f"mask {i + 1}": p for i, p in enumerate(masks)}
        self._raw.update({f"zone {n!r}": p for n, p in zones.items()})
        self._frame: tuple[int, int] | None = None
        self._motion_ignore: dict[tuple[int, ...], np.ndarray] = {}

    @property
    def empty(self) -> bool:
        return not self._masks and not self._zones

    def frame_size(self, width: int, height: int) -> None:
        """Called with each frame's size: a polygon outside the frame is said once per size."""
        if self._frame == (width, height):
            return
        self._frame = (width, height)
        for what, points in self._raw.items():
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            if max(xs) > width or max(ys) > height:
                log.warning(
                    "camera %s: %s reaches past the %dx%d frame it receives (x up to %g, y up to %g); "
                    "polygons are in frame pixels: check the camera's resolution or the polygon",
                    self.camera, what, width, height, max(xs), max(ys),
                )  # fmt: skip

    @staticmethod
    def _inside(contour: np.ndarray, box: np.ndarray) -> bool:
        cx, cy = float(box[0] + box[2] / 2), float(box[1] + box[3] / 2)
        return cv2.pointPolygonTest(contour, (cx, cy), False) >= 0

    def masked(self, box: np.ndarray) -> bool:
        """The face (x, y, w, h) has its centre inside a mask."""
        return any(self._inside(m, box) for m in self._masks)

    def zones_of(self, box: np.ndarray) -> tuple[str, ...]:
        """The zones the face's centre is in, in config order."""
        return tuple(name for name, z in self._zones.items() if self._inside(z, box))

    def motion_ignore(self, frame_wh: tuple[int, int], thumb_wh: tuple[int, int]) -> np.ndarray | None:
        """A thumbnail-sized boolean image, True inside the masks (motion there is ignored);
        None when the camera has no masks."""
        if not self._masks:
            return None
        key = (*frame_wh, *thumb_wh)
        if key not in self._motion_ignore:
            sx, sy = thumb_wh[0] / frame_wh[0], thumb_wh[1] / frame_wh[1]
            img = np.zeros((thumb_wh[1], thumb_wh[0]), np.uint8)
            for m in self._masks:
                cv2.fillPoly(img, [np.round(m.reshape(-1, 2) * (sx, sy)).astype(np.int32)], 1)
            self._motion_ignore[key] = img.astype(bool)
        return self._motion_ignore[key]
