"""Raspberry Pi camera through picamera2, reading its low-resolution (lores) stream.

The lores stream is scaled by the ISP for free, so detection never pays for decoding or
resizing full-resolution frames. picamera2 is imported only when such a camera is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import cv2
import numpy as np

from edgeemo.sources.base import Source, SourceError

if TYPE_CHECKING:
    from edgeemo.config import CameraConfig


def claims(source: str) -> bool:
    return source == "picamera2" or urlsplit(source).scheme.lower() == "picamera2"


def from_config(cam: CameraConfig) -> PiCameraSource:
    return PiCameraSource(cam.width, cam.height)


def default_name(source: str) -> str:
    return "picamera"


class PiCameraSource(Source):
    def __init__(self, width: int | None = None, height: int | None = None) -> None:
        self.size = (width or 640, height or 480)
        self._cam: Any = None

    def describe(self) -> str:
        return f"Pi camera (lores {self.size[0]}x{self.size[1]})"

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise SourceError(
                f"picamera2 is not importable ({e}); on Raspberry Pi OS: apt install "
                "python3-picamera2 and create the venv with --system-site-packages"
            ) from None
        try:
            cam = Picamera2()
            main = (self.size[0] * 2, self.size[1] * 2)
            cam.configure(
                cam.create_video_configuration(
                    main={"size": main}, lores={"size": self.size, "format": "YUV420"}
                )
            )
            cam.start()
        except Exception as e:  # libcamera raises many types; all mean "no camera now"
            raise SourceError(f"Pi camera cannot start: {e}") from None
        self._cam = cam

    def read(self) -> np.ndarray | None:
        try:
            yuv = self._cam.capture_array("lores")
        except Exception as e:
            raise SourceError(f"Pi camera stopped: {e}") from None
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
