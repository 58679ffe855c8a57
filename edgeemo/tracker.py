"""IoU tracker: stable track ids for faces across frames of one camera."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeemo.config import TrackerConfig
from edgeemo.detectors.base import Detection, iou_matrix


@dataclass(eq=False)  # identity, not field equality (boxes are arrays)
class Track:
    id: int
    box: np.ndarray
    first_seen: float
    last_seen: float
    hits: int = 1
    confirmed: bool = False
    steady: bool = False  # moved little since its previous detection
    small: bool = False  # last found by the small-face detector (see Detection.small)
    zones: tuple[str, ...] = ()  # the camera's zones its centre was last in


STEADY_IOU = 0.7  # a face whose box overlaps its previous one this much has hardly moved


SMALL_FACE_PX = 48  # below this a face may move more than its size between two analysed frames


def _similarity(tracks: np.ndarray, dets: np.ndarray, threshold: float) -> np.ndarray:
    """IoU, except that a small face whose centre moved less than its own size between frames,
    at a similar size, still matches (just above ``threshold``): a far face of 20 px walking
    12 px a frame overlaps its last box too little for IoU alone. Large faces keep plain IoU
    (someone else sitting down in the same place is someone else)."""
    ious = iou_matrix(tracks, dets)
    ct = tracks[:, :2] + tracks[:, 2:] / 2
    cd = dets[:, :2] + dets[:, 2:] / 2
    dist = np.linalg.norm(ct[:, None] - cd[None], axis=2)
    size_t, size_d = tracks[:, 2:].max(axis=1), dets[:, 2:].max(axis=1)
    ratio = size_d[None] / np.maximum(size_t[:, None], 1e-6)
    near = (dist < size_t[:, None]) & (ratio > 0.67) & (ratio < 1.5) & (size_t[:, None] < SMALL_FACE_PX)
    fallback = threshold + 1e-3 * (1 - dist / np.maximum(size_t[:, None], 1e-6))
    return np.where(near & (ious < threshold), fallback, ious)


class IoUTracker:
    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._next_id = 1

    def match(self, ts: float, dets: list[Detection]) -> tuple[list[tuple[Track, int]], list[Track]]:
        """Match detections to tracks. Returns ([(track, detection index)], ended tracks)."""
        matched: list[tuple[Track, int]] = []
        free = set(range(len(dets)))
        if self.tracks and dets:
            ious = _similarity(
                np.array([t.box for t in self.tracks]),
                np.array([d.box for d in dets]),
                self.cfg.iou_threshold,
            )
            # Greedy by best overlap: with a handful of faces this equals the optimal matching.
            for ti, di in zip(*np.unravel_index(np.argsort(-ious, axis=None), ious.shape), strict=True):
                if ious[ti, di] < self.cfg.iou_threshold:
                    break
                t = self.tracks[ti]
                if di not in free or any(m[0] is t for m in matched):
                    continue
                free.discard(di)
                t.steady = bool(ious[ti, di] >= STEADY_IOU)
                t.box, t.last_seen, t.hits, t.small = dets[di].box, ts, t.hits + 1, dets[di].small
                t.confirmed = t.confirmed or t.hits >= self.cfg.min_hits
                matched.append((t, int(di)))
        for di in sorted(free):
            t = Track(
                self._next_id, dets[di].box, ts, ts, confirmed=self.cfg.min_hits <= 1, small=dets[di].small
            )
            self._next_id += 1
            self.tracks.append(t)
            matched.append((t, di))
        seen = {id(m[0]) for m in matched}
        ended = [
            t
            for t in self.tracks
            if id(t) not in seen and (ts - t.last_seen > self.cfg.max_age_s or not t.confirmed)
        ]
        self.tracks = [t for t in self.tracks if t not in ended]
        return matched, ended

    def hold(self, ts: float, seen: list[Track]) -> list[Track]:
        """A frame not analysed, the last analysis standing for it: the faces seen then count as
        seen now, and those missing still age out. Returns the tracks that ended."""
        for t in seen:
            t.last_seen = ts
        ended = [t for t in self.tracks if ts - t.last_seen > self.cfg.max_age_s]
        self.tracks = [t for t in self.tracks if t not in ended]
        return ended

    def all_steady(self) -> bool:
        """Faces in view, every one confirmed and still: the picture is not about to change much."""
        return bool(self.tracks) and all(t.confirmed and t.steady for t in self.tracks)

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended
