"""A cheap motion gate: a picture that has not changed needs no new analysis.

Most frames of most cameras show an empty room, or people who hardly move. A face cannot
appear, leave or change its expression without the picture changing, so a frame is skipped
while

- a 64x48 grey thumbnail of the whole frame stays within ``threshold`` grey levels of the
  thumbnail of the last analysed frame (all but ``min_area`` of its pixels), and
- every tracked face, compared at 24x24 inside its box, stays within ``threshold`` too (all
  but ``min_face_area`` of its pixels): the thumbnail alone is too coarse to see a smile on
  a small face.

A full analysis still runs every ``max_skip_s``, in case something changed too slowly or too
little to count. This is Frigate's rule for stationary objects, applied to faces.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.config import MotionConfig
from edgeemo.imageops import shrink

THUMB = (64, 48)
FACE = 24  # side of the per-face comparison patch


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def face_patch(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The face's box (x, y, w, h) at FACE x FACE in grey; None if it lies outside the frame."""
    x, y, w, h = (round(float(v)) for v in box)
    x0, y0 = max(0, x), max(0, y)
    crop = image[y0 : max(y0, y + h), x0 : max(x0, x + w)]
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return None
    return _grey(cv2.resize(crop, (FACE, FACE), interpolation=cv2.INTER_AREA))


class MotionGate:
    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        # Only the last analysed frame's thumbnail is kept, not the frame (a whole frame per
        # camera: 0.9 MiB at 640x480, 6 MiB at 1080p).
        self._thumb: np.ndarray | None = None
        # The thumbnail of the frame being looked at now, made once for unchanged(),
        # moving_regions() and analysed() together; the frame is let go by analysed().
        self._now: tuple[np.ndarray, np.ndarray] | None = None
        self._faces: dict[int, np.ndarray] = {}  # track id → its patch in the last analysed frame
        self._seen: dict[int, np.ndarray] = {}  # track id → its patch when last detected
        self._missed_present = False  # the last analysis missed a face that still looks there
        self._analysed_at = float("-inf")
        self.skipped = 0
        self.ignore: np.ndarray | None = None  # thumbnail pixels whose change never counts (masks)
        self._scan_ref: np.ndarray | None = None  # the thumbnail at the last whole-frame scan

    def _thumb_of(self, image: np.ndarray) -> np.ndarray:
        if self._now is None or self._now[0] is not image:
            self._now = (image, _grey(shrink(image, *THUMB)))
        return self._now[1]

    def _changed(self, a: np.ndarray, b: np.ndarray, share: float) -> bool:
        return float((cv2.absdiff(a, b) > self.cfg.threshold).mean()) >= share

    def _thumb_diff(self, image: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
        """Where this frame's thumbnail differs from ``ref`` (default: the last analysed one),
        masks left out. Only called once that reference exists."""
        diff = cv2.absdiff(self._thumb_of(image), self._thumb if ref is None else ref) > self.cfg.threshold
        if self.ignore is not None and self.ignore.shape == diff.shape:
            diff &= ~self.ignore
        return diff

    def unchanged(self, image: np.ndarray, ts: float, faces: dict[int, np.ndarray] | None = None) -> bool:
        """True if this frame may be skipped. ``faces``: the tracked faces, id → box.

        When this returns False the caller analyses the frame and then calls ``analysed``.
        """
        if self._thumb is None or self._missed_present or ts - self._analysed_at >= self.cfg.max_skip_s:
            return False
        faces = faces or {}
        if faces.keys() != self._faces.keys():
            return False
        # Faces first: they are cheap (24x24) and change most often.
        for tid, box in faces.items():
            patch = face_patch(image, box)
            if patch is None or self._changed(patch, self._faces[tid], self.cfg.min_face_area):
                return False
        if float(self._thumb_diff(image).mean()) >= self.cfg.min_area:
            return False
        self._now = None  # skipped: no analysed() follows to let the frame go
        self.skipped += 1
        return True

    def scanned(self, image: np.ndarray) -> None:
        """The whole of this frame was just scanned for faces: the reference for
        :meth:`changed_since_scan`."""
        self._scan_ref = self._thumb_of(image)

    def changed_since_scan(self, image: np.ndarray, explained: list[np.ndarray] | None = None) -> bool:
        """Has the picture changed since the last whole-frame scan, outside the ``explained``
        boxes (x, y, w, h) and the masks? Two thumbnail cells are enough: a far person is a
        handful of them at 1080p."""
        if self._scan_ref is None:
            return True
        diff = self._thumb_diff(image, self._scan_ref)
        _blank(diff, explained, image.shape)
        return int(diff.sum()) >= 2

    def moving_regions(
        self, image: np.ndarray, explained: list[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Boxes (x, y, w, h in frame pixels) where this frame differs from the last analysed
        one, found on the thumbnails and grown by a cell each way: where a new face may be.
        Change inside an ``explained`` box (x, y, w, h: a tracked face's surroundings, its head
        and shoulders moving) is left out: only what moved beyond it makes a region."""
        if self._thumb is None:
            return []
        mask = self._thumb_diff(image).astype(np.uint8)
        _blank(mask, explained, image.shape)
        if not mask.any():
            return []
        n, _labels, stats, _c = cv2.connectedComponentsWithStats(cv2.dilate(mask, np.ones((3, 3), np.uint8)))
        fh, fw = image.shape[:2]
        sx, sy = fw / THUMB[0], fh / THUMB[1]
        return [
            np.array([(x - 1) * sx, (y - 1) * sy, (w + 2) * sx, (h + 2) * sy], dtype=np.float32)
            for x, y, w, h, _area in stats[1:n]
        ]

    def analysed(
        self,
        image: np.ndarray,
        ts: float,
        faces: dict[int, np.ndarray] | None = None,
        seen: set[int] | None = None,
    ) -> None:
        """This frame was analysed: it is the new reference, with the faces now tracked in it
        (id → box) and the ids of those the detector found in it (``seen``; default all)."""
        # Its thumbnail is the reference (made already when moving_regions() or unchanged()
        # looked at this frame); the frame itself is not kept.
        self._thumb, self._analysed_at = self._thumb_of(image), ts
        self._now = None
        faces = faces or {}
        seen = set(faces) if seen is None else seen
        self._faces, self._missed_present = {}, False
        for tid, box in faces.items():
            patch = face_patch(image, box)
            if patch is None:  # a face without a patch is never static (keys differ)
                continue
            self._faces[tid] = patch
            if tid in seen:
                self._seen[tid] = patch
            elif tid in self._seen and not self._changed(patch, self._seen[tid], self.cfg.min_face_area):
                # The detector missed a face whose box still shows what it did when found: a
                # flicker, not a departure. Look again next frame rather than let it age out.
                self._missed_present = True
        self._seen = {tid: p for tid, p in self._seen.items() if tid in faces}


def _blank(cells: np.ndarray, boxes: list[np.ndarray] | None, frame_shape: tuple[int, ...]) -> None:
    """Clear the thumbnail cells each box (x, y, w, h, frame pixels) touches: the shrink that
    makes a thumbnail spreads a change a little into the next cell."""
    sx, sy = frame_shape[1] / THUMB[0], frame_shape[0] / THUMB[1]
    for b in boxes or ():
        x0, y0 = max(0, int(np.floor(b[0] / sx))), max(0, int(np.floor(b[1] / sy)))
        x1, y1 = int(np.ceil((b[0] + b[2]) / sx)), int(np.ceil((b[1] + b[3]) / sy))
        cells[y0 : max(0, y1), x0 : max(0, x1)] = 0
