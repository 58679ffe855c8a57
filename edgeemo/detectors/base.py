"""What every face detector shares: the Detection it returns, box geometry, and the interface.

A detector plug-in is one module that decodes one family of models' outputs into
:class:`Detection` boxes in the original frame's pixels; the manifest's ``decoder`` field says
which module reads a model (see :mod:`edgeemo.detectors`).
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from edgeemo.backends import Model
from edgeemo.config import DetectorConfig
from edgeemo.imageops import shrink
from edgeemo.modelstore import Manifest

# Set while still pictures are read (edgeemo detect, /predict, eval --photos): a detector then
# uses only the input sizes the cameras' frames have made, so a still of an odd aspect neither
# holds memory for good nor takes the size a camera would get, and a still's answer does not
# depend on the stills before it.
STILLS: contextvars.ContextVar[bool] = contextvars.ContextVar("edgeemo_stills", default=False)


@contextlib.contextmanager
def reading_stills() -> Iterator[None]:
    token = STILLS.set(True)
    try:
        yield
    finally:
        STILLS.reset(token)


@dataclass
class Detection:
    box: np.ndarray  # x, y, w, h in pixels of the original frame (float)
    score: float
    small: bool = False  # found by a small-face detector: only a native-resolution look refinds it

    @property
    def size(self) -> float:
        return float(min(self.box[2], self.box[3]))


class FaceDetector(ABC):
    """Finds faces in a BGR frame; ``cfg`` holds the thresholds and limits every decoder honours."""

    uses_regions = False  # True: ``detect`` reads ``regions`` (the analyzer computes them only then)
    # A detector whose model can run at another input size reads whole frames at their own
    # aspect (BlazeFace); False: always letterboxed into the model's own input, as a detector
    # confirming crops was tuned.
    fit_aspect = True

    def __init__(self, model: Model, manifest: Manifest, cfg: DetectorConfig) -> None:
        self.model = model
        self.manifest = manifest
        self.cfg = cfg

    @abstractmethod
    def detect(self, frame_bgr: np.ndarray, regions: list[np.ndarray] | None = None) -> list[Detection]:
        """Faces best first, at most ``cfg.max_faces``, none smaller than ``cfg.min_face_px``.

        ``regions`` (x, y, w, h boxes): where the picture may have changed; a detector that can
        look at parts of a frame at native resolution looks only there, the others ignore it."""


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes (x, y, w, h): a (N, 4) and b (M, 4) → (N, M)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int) -> list[np.ndarray]:
    """MediaPipe-style blending NMS: overlapping boxes are averaged, weighted by score.

    Returns rows of (x, y, w, h, score), best first.
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept = []
    remaining = np.ones(len(scores), dtype=bool)
    ious = iou_matrix(boxes, boxes)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        group = remaining & (ious[i] >= iou)
        group[i] = True
        w = scores[group]
        blended = (boxes[group] * w[:, None]).sum(axis=0) / w.sum()
        kept.append(np.append(blended, scores[i]))
        remaining &= ~group
        if len(kept) >= limit:
            break
    return kept


def letterbox(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping the aspect ratio and pad; returns (image, scale, pad_x, pad_y)."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale < 1:
        resized = shrink(image, nw, nh)
    else:
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    px, py = (width - nw) // 2, (height - nh) // 2
    out = cv2.copyMakeBorder(resized, py, height - nh - py, px, width - nw - px, cv2.BORDER_CONSTANT, value=0)
    return out, scale, px, py


def clip_box(box: np.ndarray, fw: int, fh: int) -> np.ndarray:
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(fw), box[0] + box[2]), min(float(fh), box[1] + box[3])
    return np.array([x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)], dtype=np.float32)
