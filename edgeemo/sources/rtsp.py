"""RTSP (and HTTP) network cameras through OpenCV's FFmpeg backend, over TCP."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import cv2
import numpy as np

from edgeemo.config import redact_url, strip_credentials
from edgeemo.credentials import expand
from edgeemo.sources.base import Source, SourceError

if TYPE_CHECKING:
    from edgeemo.config import CameraConfig

# UDP through NAT and Wi-Fi loses packets and smears frames; TCP is what users expect.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")


def claims(source: str) -> bool:
    return urlsplit(source).scheme.lower() in SCHEMES


def from_config(cam: CameraConfig) -> RTSPSource:
    # ${NAME} references (passwords) are filled in only now, from the environment or credentials.
    return RTSPSource(expand(cam.source, f"cameras.{cam.name}.source"))


def default_name(source: str) -> str:
    p = urlsplit(strip_credentials(source))  # a raw password may hold / or #: never in a name
    return f"{p.hostname or 'camera'}{p.path}"


class RTSPSource(Source):
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_ms = int(timeout_s * 1000)
        self._cap: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return redact_url(self.url)

    def open(self) -> None:
        cap = cv2.VideoCapture(
            self.url,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self.timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self.timeout_ms,
            ],
        )
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open {self.describe()} (no answer within {self.timeout_ms / 1000:.0f} s, "
                "wrong path or credentials); check the URL and that the camera is reachable"
            )
        self._cap = cap

    def read(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, img = self._cap.read()
        if not ok:
            raise SourceError(f"stream {self.describe()} stopped delivering frames")
        return img

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
