"""Video files and still images, played at the clip's own frame rate like a camera."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeemo.sources.base import Source, SourceError

if TYPE_CHECKING:
    from edgeemo.config import CameraConfig

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# FFmpeg decodes with one thread per core per capture by default: 3 threads and ~1 MiB each
# more per clip here, and each thread can hold its own malloc arena. A clip played at its own
# frame rate needs one (640x480 H.264 decodes at hundreds of fps on one core).
DECODE_THREADS = 1


def claims(source: str) -> bool:
    return True  # whatever no other kind claims is taken for a path


def from_config(cam: CameraConfig) -> FileSource:
    return FileSource(cam.source, loop=cam.loop, still_fps=cam.detect_fps)


def default_name(source: str) -> str:
    return Path(source).stem


class FileSource(Source):
    def __init__(self, path: str, loop: bool = False, still_fps: float = 5.0) -> None:
        self.path = Path(path)
        self.loop = loop
        self.still_fps = still_fps
        self._cap: cv2.VideoCapture | None = None
        self._still: np.ndarray | None = None
        self._fps = still_fps
        self._t0 = 0.0
        self._n = 0

    def describe(self) -> str:
        return f"file {self.path}"

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"file {self.path} does not exist")
        if self.path.suffix.lower() in IMAGE_EXT:
            self._still = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
            if self._still is None:
                raise SourceError(f"{self.path} is not a readable image")
        else:
            params = [cv2.CAP_PROP_N_THREADS, DECODE_THREADS]
            self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_ANY, params)
            if not self._cap.isOpened():
                raise SourceError(f"{self.path} is not a readable video")
            fps = self._cap.get(cv2.CAP_PROP_FPS)
            self._fps = fps if 1.0 <= fps <= 240.0 else 25.0
        self._t0, self._n = time.monotonic(), 0

    def _pace(self) -> None:
        due = self._t0 + self._n / self._fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._n += 1

    def read(self) -> np.ndarray | None:
        if self._still is not None:
            if self._n > 0 and not self.loop:
                return None
            self._pace()
            return self._still
        assert self._cap is not None
        ok, img = self._cap.read()
        if not ok and self.loop and self._n > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self._cap.read()
        if not ok:
            return None
        self._pace()
        return img

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._still = None, None
