"""YuNet (OpenCV Zoo, MIT): a small anchor-free face detector built for small faces.

It runs at the frame's native resolution (padded to a multiple of 32), where BlazeFace must
shrink a frame to 128 or 192 px and loses every face under ~100 px of a 1080p picture. Outputs
per stride s in (8, 16, 32), one row per grid cell: ``cls`` and ``obj`` scores, ``bbox``
(dx, dy, log w, log h in cells) and five landmarks (unused here). Decoding follows OpenCV's
``FaceDetectorYN``.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.backends import Model, ModelError
from edgeemo.config import DetectorConfig
from edgeemo.detectors.base import Detection, FaceDetector, clip_box
from edgeemo.modelstore import Manifest

STRIDES = (8, 16, 32)
DEFAULT_THRESHOLD = 0.85  # measured: 0.6 gives ~1.5 false faces per 1080p frame
# OpenCV's DNN holds ~70 bytes of working memory per input pixel for YuNet (22 MiB at 640x480,
# ~150 MiB at 1080p), so larger pictures are read in tiles of at most TILE x TILE (~7 MiB).
# Tiles overlap by TILE_OVERLAP, and each answers only for faces centred in its share, so a
# face up to ~TILE_OVERLAP px is read whole with context around it; a larger one, cut by a
# tile's inner edge, is dropped there and found in the same picture shrunk by half, and so on.
# Measured (scripts/small_faces.py, 1080p and 640x480): 96 px lost a 112 px face that YuNet
# scores 0.88 at native size but 0.33 at half; 128 px recalled as many faces as one whole pass
# until the small-face thresholds changed, then lost one 28 px face of 36 (held-out 1080p), which
# 160 px keeps (35 of 36, as one whole pass): ~25% more tile passes.
TILE = 320
TILE_OVERLAP = 160
EDGE = 4  # a box this close to a tile's inner edge is taken as cut by it
# A larger region (motion, a tracked face's surroundings) is scanned shrunk to this: its small
# faces are near the camera. One tile: a region is one pass, never tiles (480 px regions in
# tiles took 2.5x the passes on the moving bench clip; one 480 px pass, 2.2x a tile's memory).
REGION_MAX_PX = TILE
# tile_px 0 reads a picture in one pass up to this many pixels (2560x1440, ~250 MiB of working
# memory); a larger one (a 12 MP photo: ~800 MiB) is read in TILE tiles all the same.
ONE_PASS_MAX_PX = 2560 * 1440


class Detector(FaceDetector):
    uses_regions = True

    def __init__(self, model: Model, manifest: Manifest, cfg: DetectorConfig) -> None:
        names = {o.name for o in model.outputs}
        missing = [f"{k}_{s}" for k in ("cls", "obj", "bbox") for s in STRIDES if f"{k}_{s}" not in names]
        if missing:
            raise ModelError(f"{model.path.name} lacks YuNet's outputs {missing}: is it a YuNet model?")
        super().__init__(model, manifest, cfg)
        self._index = {o.name: i for i, o in enumerate(model.outputs)}
        self.threshold = cfg.score_threshold if cfg.score_threshold is not None else DEFAULT_THRESHOLD
        self.tile = cfg.tile_px  # 0: one pass over the whole picture, up to ONE_PASS_MAX_PX

    def detect(self, frame_bgr: np.ndarray, regions: list[np.ndarray] | None = None) -> list[Detection]:
        """Faces in the whole frame, or only inside ``regions`` (x, y, w, h boxes of the frame)."""
        fh, fw = frame_bgr.shape[:2]
        if regions is None:
            boxes, scores = self._raw(frame_bgr)
        else:
            found = []
            for r in merge_regions(regions, fw, fh):
                x0, y0, x1, y1 = r
                crop = frame_bgr[y0:y1, x0:x1]
                k = min(1.0, REGION_MAX_PX / max(x1 - x0, y1 - y0))
                if k < 1.0:
                    crop = cv2.resize(
                        crop, (round((x1 - x0) * k), round((y1 - y0) * k)), interpolation=cv2.INTER_AREA
                    )
                b, s = self._raw(crop)
                b /= k
                b[:, 0] += x0
                b[:, 1] += y0
                found.append((b, s))
            if not found:
                return []
            boxes = np.concatenate([b for b, _ in found])
            scores = np.concatenate([s for _, s in found])
        if len(scores) == 0:
            return []
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.threshold, self.cfg.nms_iou)
        dets = []
        for i in np.array(keep).reshape(-1)[: self.cfg.max_faces]:
            d = Detection(clip_box(boxes[i], fw, fh), float(scores[i]))
            if d.size >= self.cfg.min_face_px:
                dets.append(d)
        return dets

    def _raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All candidate boxes (x, y, w, h) above the threshold in ``image``, with scores: in
        one pass if it fits a tile, else tile by tile, then again at half the size."""
        h, w = image.shape[:2]
        tile = self.tile or (TILE if h * w > ONE_PASS_MAX_PX else 0)
        if not tile or (h <= tile and w <= tile):
            return self._forward(image)
        ys, xs = _spans(h, tile), _spans(w, tile)
        found = []
        for j, (y0, y1) in enumerate(ys):
            for i, (x0, x1) in enumerate(xs):
                b, s = self._forward(image[y0:y1, x0:x1])
                b[:, 0] += x0
                b[:, 1] += y0
                found.append(_owned(b, s, xs, i, ys, j))
        half = cv2.resize(image, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
        b, s = self._raw(half)
        b[:, 0::2] *= w / half.shape[1]  # x, w
        b[:, 1::2] *= h / half.shape[0]  # y, h (an odd side halves a little unevenly)
        found.append((b, s))
        return np.concatenate([b for b, _ in found]), np.concatenate([s for _, s in found])

    def _forward(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One pass of the network over ``image`` (padded to a multiple of 32)."""
        h, w = image.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        if (ph, pw) != (h, w):
            image = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0)
        # uint8 as it is: YuNet's normalisation is the identity, and the backend makes the float
        # copy under the model's lock (see Model.run).
        outs = self.model.run(np.ascontiguousarray(image)[None])
        boxes, scores = [], []
        for s in STRIDES:
            cls = outs[self._index[f"cls_{s}"]].reshape(-1)
            obj = outs[self._index[f"obj_{s}"]].reshape(-1)
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.flatnonzero(score >= self.threshold)
            if not len(keep):
                continue
            cols = pw // s
            bbox = outs[self._index[f"bbox_{s}"]].reshape(-1, 4)[keep]
            cx = (keep % cols + bbox[:, 0]) * s
            cy = (keep // cols + bbox[:, 1]) * s
            sizes = np.exp(np.clip(bbox[:, 2:4], -10.0, 10.0)) * s  # noise can ask for e^100
            bw, bh = sizes[:, 0], sizes[:, 1]
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1))
            scores.append(score[keep])
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)


def _owned(
    b: np.ndarray, s: np.ndarray, xs: list[tuple[int, int]], i: int, ys: list[tuple[int, int]], j: int
) -> tuple[np.ndarray, np.ndarray]:
    """What tile (i, j) answers for: boxes centred in its share of the overlaps (so each face
    comes from the tile where it is most central, with the most context around it), and not
    cut by an inner edge (a face larger than the overlap: the half-size picture finds it)."""
    keep = np.ones(len(s), bool)
    for spans, k, pos, extent in ((xs, i, b[:, 0], b[:, 2]), (ys, j, b[:, 1], b[:, 3])):
        centre = pos + extent / 2
        lo, hi = spans[k]
        if k > 0:
            keep &= (centre >= (spans[k - 1][1] + lo) / 2) & (pos >= lo + EDGE)
        if k + 1 < len(spans):
            keep &= (centre < (spans[k + 1][0] + hi) / 2) & (pos + extent <= hi - EDGE)
    return b[keep], s[keep]


def _spans(length: int, tile: int = TILE) -> list[tuple[int, int]]:
    """Tiles along one side, (start, end): at most ``tile`` long, overlapping by at least
    TILE_OVERLAP, starting on multiples of 32 (YuNet's coarsest stride), so each tile sees
    the same grid as a whole-picture pass would and finds the same boxes."""
    step = (tile - TILE_OVERLAP) // 32 * 32
    last = -(-(length - tile) // 32) * 32  # the last tile reaches the end (padded, as a whole picture is)
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(min(starts[-1] + step, last))
    return [(x, min(x + tile, length)) for x in starts]


def merge_regions(regions: list[np.ndarray], fw: int, fh: int, min_side: int = 32) -> list[tuple[int, ...]]:
    """Regions (x, y, w, h) clipped to the frame, at least ``min_side`` each way, and merged
    where they overlap, so no pixel is scanned twice: (x0, y0, x1, y1) each."""
    boxes = []
    for r in regions:
        cx, cy = r[0] + r[2] / 2, r[1] + r[3] / 2
        w, h = max(float(r[2]), min_side), max(float(r[3]), min_side)
        x0, y0 = max(0, int(cx - w / 2)), max(0, int(cy - h / 2))
        x1, y1 = min(fw, int(np.ceil(cx + w / 2))), min(fh, int(np.ceil(cy + h / 2)))
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            boxes.append([x0, y0, x1, y1])
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(b) for b in boxes]
