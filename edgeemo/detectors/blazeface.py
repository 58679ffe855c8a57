"""BlazeFace face detection: the frame at its aspect (or letterboxed), SSD anchors, weighted NMS.

Anchors follow MediaPipe's SsdAnchorsCalculator with ``fixed_anchor_size``: consecutive
layers of equal stride share one grid, each layer adds one anchor (two with the
interpolated scale), and every anchor of a cell has the cell's centre and unit size.

BlazeFace is fully convolutional, so where the backend allows it runs at the frame's aspect
(a 4:3 frame at 128x96) instead of letterboxed into its 128x128 square: the padding it would
read is a quarter of the work and holds no face. The anchor grids follow the input's size.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.backends import Model, ModelError
from edgeemo.config import DetectorConfig
from edgeemo.detectors.base import STILLS, Detection, FaceDetector, clip_box, letterbox, weighted_nms
from edgeemo.modelstore import AnchorSpec, Manifest

DEFAULT_THRESHOLD = 0.6


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


class Detector(FaceDetector):
    def __init__(self, model: Model, manifest: Manifest, cfg: DetectorConfig) -> None:
        if manifest.anchors is None:
            raise ModelError(f"manifest {manifest.name!r} has no anchors section")
        super().__init__(model, manifest, cfg)
        self.threshold = cfg.score_threshold if cfg.score_threshold is not None else DEFAULT_THRESHOLD
        # The config keeps the threshold strictly between 0 and 1, so its logit is finite.
        self._logit = float(np.log(self.threshold) - np.log1p(-self.threshold))
        spec = manifest.input
        self.anchors = ssd_anchors(spec.width, spec.height, manifest.anchors)
        n_out = model.outputs[0].shape[1]
        if n_out != len(self.anchors):
            raise ModelError(
                f"{model.path.name}: {n_out} boxes but {len(self.anchors)} anchors from the manifest; "
                "the manifest does not match the model"
            )
        # Input size (w, h) → the model at that size and its anchors; None: letterbox instead.
        self._sized: dict[tuple[int, int], tuple[Model, np.ndarray] | None] = {}
        self._step = max(manifest.anchors.strides)  # every grid must tile the input exactly

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The model's input for a ``width`` x ``height`` picture: its native square shrunk along
        the short side to the aspect, rounded up to the coarsest anchor grid (640x480 → 128x96,
        1920x1080 → 128x80), or the native size where the model cannot run at that one."""
        w, h, _, _ = self._fit(width, height)
        return w, h

    def _fit(self, width: int, height: int) -> tuple[int, int, Model, np.ndarray]:
        """:meth:`input_size`, with the model at that size and its anchors (one lookup a frame)."""
        spec = self.manifest.input
        if not self.fit_aspect:
            w, h = spec.width, spec.height
        elif width >= height:
            w, h = spec.width, min(spec.height, -(-spec.width * height // (width * self._step)) * self._step)
        else:
            h, w = spec.height, min(spec.width, -(-spec.height * width // (height * self._step)) * self._step)
        found = self._model_for(w, h)
        return (w, h, *found) if found is not None else (spec.width, spec.height, self.model, self.anchors)

    def _model_for(self, w: int, h: int) -> tuple[Model, np.ndarray] | None:
        spec = self.manifest.input
        if (w, h) == (spec.width, spec.height):  # checked against the model when made
            return self.model, self.anchors
        if (w, h) not in self._sized:
            create = not STILLS.get()
            model, found = self.model.sized(h, w, create), None
            if model is None and not create:
                return None  # a still, at a size no camera has made: letterboxed, not remembered
            if model is not None:
                anchors = ssd_anchors(w, h, self.manifest.anchors)  # type: ignore[arg-type]
                # A graph that reshapes to fixed sizes runs but gives other boxes: not used.
                if model.outputs[0].shape[1] == len(anchors):
                    found = (model, anchors)
            self._sized[(w, h)] = found
        return self._sized[(w, h)]

    def detect(self, frame_bgr: np.ndarray, regions: list[np.ndarray] | None = None) -> list[Detection]:
        # The whole frame always: at 128 px a region would cost as much and see no more.
        spec = self.manifest.input
        fh, fw = frame_bgr.shape[:2]
        in_w, in_h, model, anchors = self._fit(fw, fh)
        img, scale, px, py = letterbox(frame_bgr, in_w, in_h)
        if spec.color == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = img.astype(np.float32)[None] * spec.scale + spec.offset
        outs = model.run(x)
        # Regressors have 16 values per box, scores one; pick by shape, not by name.
        reg = next(o for o in outs if o.shape[-1] == 16)[0]
        raw = next(o for o in outs if o.shape[-1] == 1)[0, :, 0]
        # Compare logits with the threshold's logit: the sigmoid only for the few kept.
        keep = raw >= self._logit
        if not keep.any():
            return []
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw[keep], -80.0, 80.0)))
        reg, anchors = reg[keep], anchors[keep]
        # Regressors are in input pixels, anchor centres in [0, 1] of the input; → frame pixels.
        cx = reg[:, 0] + anchors[:, 0] * in_w
        cy = reg[:, 1] + anchors[:, 1] * in_h
        x0 = (cx - reg[:, 2] / 2 - px) / scale
        y0 = (cy - reg[:, 3] / 2 - py) / scale
        boxes = np.stack([x0, y0, reg[:, 2] / scale, reg[:, 3] / scale], axis=1)
        dets = []
        for row in weighted_nms(boxes, scores, self.cfg.nms_iou, self.cfg.max_faces * 2):
            box = clip_box(row[:4], fw, fh)
            d = Detection(box, float(row[4]))
            if d.size >= self.cfg.min_face_px:
                dets.append(d)
        return dets[: self.cfg.max_faces]
