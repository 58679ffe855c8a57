"""BlazeFace face detection: letterboxed input, SSD anchor decoding, weighted NMS.

Anchors follow MediaPipe's SsdAnchorsCalculator with ``fixed_anchor_size``: consecutive
layers of equal stride share one grid, each layer adds one anchor (two with the
interpolated scale), and every anchor of a cell has the cell's centre and unit size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeemo.config import DetectorConfig
from edgeemo.imageops import shrink
from edgeemo.inference import ModelError, TFLiteModel
from edgeemo.modelstore import AnchorSpec, Manifest


@dataclass
class Detection:
    box: np.ndarray  # x, y, w, h in pixels of the original frame (float)
    score: float

    @property
    def size(self) -> float:
        return float(min(self.box[2], self.box[3]))


def ssd_anchors(width: int, height: int, spec: AnchorSpec) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the order the model emits its boxes."""
    per_layer = 2 if spec.interpolated else 1
    out = []
    i = 0
    strides = spec.strides
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = per_layer * (j - i)
        fh, fw = -(-height // strides[i]), -(-width // strides[i])
        ys, xs = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, n, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


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


class FaceDetector:
    def __init__(self, model: TFLiteModel, manifest: Manifest, cfg: DetectorConfig) -> None:
        if manifest.anchors is None:
            raise ModelError(f"manifest {manifest.name!r} has no anchors section")
        self.model = model
        self.manifest = manifest
        self.cfg = cfg
        spec = manifest.input
        self.anchors = ssd_anchors(spec.width, spec.height, manifest.anchors)
        n_out = model.outputs[0].shape[1]
        if n_out != len(self.anchors):
            raise ModelError(
                f"{model.path.name}: {n_out} boxes but {len(self.anchors)} anchors from the manifest; "
                "the manifest does not match the model"
            )

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        spec = self.manifest.input
        img, scale, px, py = letterbox(frame_bgr, spec.width, spec.height)
        if spec.color == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = img.astype(np.float32)[None] * spec.scale + spec.offset
        outs = self.model.run(x)
        # Regressors have 16 values per box, scores one; pick by shape, not by name.
        reg = next(o for o in outs if o.shape[-1] == 16)[0]
        raw = next(o for o in outs if o.shape[-1] == 1)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw, -80.0, 80.0)))
        keep = scores >= self.cfg.score_threshold
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self.anchors[keep]
        cx = reg[:, 0] / spec.width + anchors[:, 0]
        cy = reg[:, 1] / spec.height + anchors[:, 1]
        bw = reg[:, 2] / spec.width
        bh = reg[:, 3] / spec.height
        # Letterboxed model coordinates → original frame pixels.
        x0 = ((cx - bw / 2) * spec.width - px) / scale
        y0 = ((cy - bh / 2) * spec.height - py) / scale
        boxes = np.stack([x0, y0, bw * spec.width / scale, bh * spec.height / scale], axis=1)
        fh, fw = frame_bgr.shape[:2]
        dets = []
        for row in weighted_nms(boxes, scores, self.cfg.nms_iou, self.cfg.max_faces * 2):
            box = _clip_box(row[:4], fw, fh)
            d = Detection(box, float(row[4]))
            if d.size >= self.cfg.min_face_px:
                dets.append(d)
        return dets[: self.cfg.max_faces]


def _clip_box(box: np.ndarray, fw: int, fh: int) -> np.ndarray:
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(fw), box[0] + box[2]), min(float(fh), box[1] + box[3])
    return np.array([x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)], dtype=np.float32)
