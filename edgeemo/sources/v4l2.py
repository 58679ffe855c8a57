"""USB webcams and other V4L2 devices."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeemo.sources.base import Source, SourceError

if TYPE_CHECKING:
    from edgeemo.config import CameraConfig


def claims(source: str) -> bool:
    return source.startswith("/dev/video") or re.fullmatch(r"\d+", source) is not None


def from_config(cam: CameraConfig) -> V4L2Source:
    return V4L2Source(cam.source, cam.width, cam.height)


def default_name(source: str) -> str:
    return Path(source).name if source.startswith("/dev/") else f"video{source}"


class V4L2Source(Source):
    def __init__(self, device: str, width: int | None = None, height: int | None = None) -> None:
        self.device = int(device) if device.isdigit() else device
        self.width, self.height = width, height
        self._cap: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return f"V4L2 device {self.device}"

    def open(self) -> None:
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open {self.describe()}: check it exists and the edgeemo user is in group video"
            )
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a stale backlog
        self._cap = cap

    def read(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, img = self._cap.read()
        if not ok:
            raise SourceError(f"{self.describe()} stopped delivering frames (unplugged?)")
        return img

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
