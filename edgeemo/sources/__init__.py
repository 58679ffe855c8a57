"""Frame sources: the table of kinds, each one module behind :class:`edgeemo.sources.base.Source`.

Adding a source kind is one module with a ``Source`` subclass and three functions —
``claims(source)`` (does a ``source:`` string look like mine?), ``from_config(camera)`` and
``default_name(source)`` (a camera name for ``edgeemo run --source``) — plus one row here. The
config's ``cameras[].type`` choices come from this table. Modules are imported when a camera
needs them, and only ``open`` imports a kind's optional library (picamera2).
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import TYPE_CHECKING

from edgeemo.sources.base import (
    END,
    CameraReader,
    EndOfStream,
    Frame,
    FrameQueue,
    Source,
    SourceError,
    StatusChange,
)

if TYPE_CHECKING:
    from edgeemo.config import CameraConfig

# Guessed in this order for ``type: auto``: the first kind that claims a source wins.
SOURCES: dict[str, str] = {
    "rtsp": "edgeemo.sources.rtsp",
    "picamera2": "edgeemo.sources.picamera",
    "v4l2": "edgeemo.sources.v4l2",
    "file": "edgeemo.sources.file",  # claims anything: keep it last
}

__all__ = [
    "END",
    "SOURCES",
    "CameraReader",
    "EndOfStream",
    "Frame",
    "FrameQueue",
    "Source",
    "SourceError",
    "StatusChange",
    "default_name",
    "guess_kind",
    "make_source",
]


def _module(kind: str) -> ModuleType:
    return importlib.import_module(SOURCES[kind])


def guess_kind(source: str) -> str:
    return next(kind for kind in SOURCES if _module(kind).claims(source.strip()))


def make_source(cam: CameraConfig) -> Source:
    return _module(cam.kind).from_config(cam)


def default_name(source: str, taken: set[str]) -> str:
    """A camera name for a bare ``--source``, unique among ``taken`` (which it extends)."""
    base = _module(guess_kind(source)).default_name(source)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_")[:48] or "camera"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique
