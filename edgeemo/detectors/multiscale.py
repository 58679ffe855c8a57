"""Faces of every size with no choice to make: the default detector (``detector.model: auto``).

BlazeFace (short range) reads the whole frame shrunk to 128 px every analysed frame: cheap, and
it finds faces near the camera however large. YuNet reads at native resolution, where faces of
20–100 px in a 1080p picture still have pixels: on the whole frame at a slow cadence, and in
between only in the regions the analyzer names (motion, tracked faces), as Frigate does. A
face both find is kept once.
"""

from __future__ import annotations

import numpy as np

from edgeemo.config import DetectorConfig
from edgeemo.detectors.base import Detection, FaceDetector, iou_matrix

# Chosen on scripts/small_faces.py's sets (README): recall at 20-28 px against false faces.
SMALL_THRESHOLD = 0.15  # YuNet's score here: low, because BlazeFace confirms every candidate
# (its best detector.max_faces, 10: offering 30 tripled the false faces on textured scenes)
VERIFY_CONTEXT = 2.0  # the confirming crop is this many times the candidate's size,
VERIFY_CONTEXT_SMALL = 3.0  # or this under SMALL_PX: BlazeFace needs head and shoulders to see
SMALL_PX = 64  # (width; YuNet boxes are taller than wide)
SURE_SMALL = 0.6  # a small candidate YuNet scores this high needs BlazeFace's CONFIRM_THRESHOLD
CONFIRM_THRESHOLD = 0.5  # on the crop; any other needs BlazeFace's own (0.6)
# A candidate YuNet scores this high needs no second opinion: on scripts/small_faces.py's 1080p
# held-out frames BlazeFace confirmed 185 of 185 at ≥ 0.9 (and 229 of 229 at ≥ 0.8), and each
# confirmation costs a BlazeFace run (~2.5 ms): 11 ms of a 1080p picture's 190.
SURE = 0.9


class MultiScaleDetector(FaceDetector):
    uses_regions = True

    def __init__(self, near: FaceDetector, small: FaceDetector | None, cfg: DetectorConfig) -> None:
        # No model of its own: it composes two detectors (their models are near.model, small.model).
        self.near, self.small, self.cfg = near, small, cfg
        self.model, self.manifest = near.model, near.manifest
        # The same BlazeFace model with a lower threshold: for a candidate YuNet is fairly sure
        # of, a weaker answer on a crop centred on it is enough.
        confirm_cfg = cfg.model_copy(update={"score_threshold": CONFIRM_THRESHOLD, "min_face_px": 1})
        self.confirmer = type(near)(near.model, near.manifest, confirm_cfg)
        # Crops cut short at the frame's edge are not square: they are letterboxed, as when the
        # thresholds above were chosen, and make no interpreter of their own size.
        self.confirmer.fit_aspect = False
        self.near_threshold = float(getattr(near, "threshold", CONFIRM_THRESHOLD))

    def detect(
        self,
        frame_bgr: np.ndarray,
        regions: list[np.ndarray] | None = None,
        near: list[Detection] | None = None,
    ) -> list[Detection]:
        """``near``: BlazeFace's faces in this frame, if the caller has found them already
        (the analyzer does, to leave the motion they explain out of ``regions``)."""
        dets = self.near.detect(frame_bgr) if near is None else near
        if self.small is not None and (regions is None or regions):
            extra = [
                d
                for d in self.small.detect(frame_bgr, regions)
                if not _duplicate(d, dets) and (d.score >= SURE or self._confirmed(frame_bgr, d))
            ]
            for d in extra:
                d.small = True
            dets = dets + extra
        return dets[: self.cfg.max_faces]

    def _confirmed(self, frame: np.ndarray, d: Detection) -> bool:
        """Does BlazeFace, on a crop around a YuNet candidate (scaled up to its 128 px input for a
        small one), see a face there too? YuNet alone takes dogs' heads and textures for faces
        (~1 a 1080p frame at score 0.5); the two together rarely agree on one."""
        x, y, w, h = (float(v) for v in d.box)
        tiny = w < SMALL_PX
        side = max(w, h) * (VERIFY_CONTEXT_SMALL if tiny else VERIFY_CONTEXT)
        x0, y0 = max(0, round(x + w / 2 - side / 2)), max(0, round(y + h / 2 - side / 2))
        crop = frame[y0 : y0 + round(side), x0 : x0 + round(side)]
        need = CONFIRM_THRESHOLD if tiny and d.score >= SURE_SMALL else self.near_threshold
        found = [f for f in self.confirmer.detect(crop) if f.score >= need]
        if not found:
            return False
        local = d.box - np.array([x0, y0, 0, 0], np.float32)
        return bool(iou_matrix(local[None], np.array([f.box for f in found])).max() >= 0.3)


def _duplicate(d: Detection, kept: list[Detection]) -> bool:
    """The same face as one already kept: overlapping boxes, or its centre inside one (the two
    models frame a face differently: YuNet's box is taller)."""
    if not kept:
        return False
    boxes = np.array([k.box for k in kept])
    if iou_matrix(d.box[None], boxes).max() >= 0.3:
        return True
    cx, cy = d.box[0] + d.box[2] / 2, d.box[1] + d.box[3] / 2
    inside = (boxes[:, 0] <= cx) & (cx <= boxes[:, 0] + boxes[:, 2])
    inside &= (boxes[:, 1] <= cy) & (cy <= boxes[:, 1] + boxes[:, 3])
    return bool(inside.any())
