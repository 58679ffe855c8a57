"""Frame sources, one module per kind, all behind :class:`edgeemo.sources.base.Source`."""

from __future__ import annotations

from edgeemo.config import CameraConfig
from edgeemo.secrets import expand
from edgeemo.sources.base import CameraReader, Frame, FrameQueue, Source, SourceError

__all__ = ["CameraReader", "Frame", "FrameQueue", "Source", "SourceError", "make_source"]


def make_source(cam: CameraConfig) -> Source:
    kind = cam.kind
    if kind == "rtsp":
        from edgeemo.sources.rtsp import RTSPSource

        return RTSPSource(expand(cam.source, f"cameras.{cam.name}.source"))
    if kind == "v4l2":
        from edgeemo.sources.v4l2 import V4L2Source

        return V4L2Source(cam.source, cam.width, cam.height)
    if kind == "picamera2":
        from edgeemo.sources.picamera import PiCameraSource

        return PiCameraSource(cam.width, cam.height)
    from edgeemo.sources.file import FileSource

    return FileSource(cam.source, loop=cam.loop, still_fps=cam.detect_fps)
