"""Emotion classification of face crops, driven entirely by the model's manifest."""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.backends import Model, ModelError
from edgeemo.modelstore import Manifest


def square_crop(frame: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """A square crop around the box centre, grown by ``margin``; edge pixels pad the outside."""
    fh, fw = frame.shape[:2]
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    s = max(1, round(side))
    x1, y1 = x0 + s, y0 + s
    crop = frame[max(0, y0) : min(fh, y1), max(0, x0) : min(fw, x1)]
    pads = (max(0, -y0), max(0, y1 - fh), max(0, -x0), max(0, x1 - fw))
    if any(pads) and crop.size:
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE)
    return crop


class EmotionClassifier:
    def __init__(self, model: Model, manifest: Manifest, margin: float = 0.1, min_face_px: int = 1) -> None:
        if not manifest.labels:
            raise ModelError(f"manifest {manifest.name!r} names no labels")
        n_out = model.outputs[0].shape[-1]
        if n_out != len(manifest.labels):
            raise ModelError(
                f"{model.path.name} has {n_out} outputs but its manifest lists {len(manifest.labels)} "
                "labels: the manifest does not describe this model (is it an emotion model?)"
            )
        self.model = model
        self.manifest = manifest
        self.labels = list(manifest.labels)
        self.margin = margin
        self.min_face_px = min_face_px  # narrower faces are not read (emotion.min_face_px)

    def preprocess(self, crop_bgr_or_gray: np.ndarray) -> np.ndarray:
        """One crop → the model's normalised float input (H, W, C). Shared with evaluation."""
        spec = self.manifest.input
        img = crop_bgr_or_gray
        if spec.color == "gray":
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if spec.color == "rgb" and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, _w = img.shape[:2]
        interp = cv2.INTER_AREA if h > spec.height else cv2.INTER_LINEAR
        img = cv2.resize(img, (spec.width, spec.height), interpolation=interp)
        x = img.astype(np.float32) * spec.scale + spec.offset
        return x[..., None] if x.ndim == 2 else x

    def classify_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Crops (BGR or gray) → probabilities (N, labels), one batched model call."""
        if not crops:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        batch = np.stack([self.preprocess(c) for c in crops])
        y = self.model.run(batch)[0].reshape(len(crops), -1).astype(np.float32)
        if self.manifest.output == "logits":
            y = np.exp(y - y.max(axis=1, keepdims=True))
            y /= y.sum(axis=1, keepdims=True)
        return y

    def classify(self, frame_bgr: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        crops = [square_crop(frame_bgr, b, self.margin) for b in boxes]
        return self.classify_crops(crops)
