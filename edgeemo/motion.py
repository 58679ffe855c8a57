"""A cheap motion gate: an empty, unchanging scene needs no face detector.

Most frames of most cameras show an empty room. A face cannot appear without the picture
changing, so while no face is tracked and a 64x48 thumbnail of the frame stays within
``threshold`` grey levels of the last analysed one, detection is skipped. A full analysis
still runs every ``max_skip_s`` in case something appeared too small or too slowly to count.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.config import MotionConfig

THUMB = (64, 48)


class MotionGate:
    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self._ref: np.ndarray | None = None
        self._analysed_at = float("-inf")
        self.skipped = 0

    def _thumb(self, image: np.ndarray) -> np.ndarray:
        small = cv2.resize(image, THUMB, interpolation=cv2.INTER_AREA)  # averaging also hides sensor noise
        return small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

    def static(self, image: np.ndarray, ts: float) -> bool:
        """True if this frame may be skipped; otherwise it becomes the new reference."""
        thumb = self._thumb(image)
        if self._ref is not None and ts - self._analysed_at < self.cfg.max_skip_s:
            changed = float((cv2.absdiff(thumb, self._ref) > self.cfg.threshold).mean())
            if changed < self.cfg.min_area:
                self.skipped += 1
                return True
        self._ref, self._analysed_at = thumb, ts
        return False
