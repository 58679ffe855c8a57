#!/usr/bin/env python3
"""Recall by face size on security-camera-like frames, as a user runs `edgeemo detect`.

Builds 1920x1080 (or --size) JPEG frames (quality 80): six face photos from ../shared/data/muxspace
pasted at one known face width over a background, for widths 20..160 px; then runs the default
detector on each file (decode included) and, in the same run, OpenCV's FaceDetectorYN (YuNet) on
the whole frame as the cost reference. Prints one JSON object: recall per width (IoU >= 0.3),
false faces per frame, ms per frame for both. Development data: pass --every/--offset to pick a
different slice of photos for a held-out check.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from edgeemo.analyzer import FaceModels
from edgeemo.config import DetectorConfig
from edgeemo.detectors import iou_matrix
from edgeemo.modelstore import default_models_dir
from edgeemo.tools.devtools import empty_room

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WIDTHS = [20, 28, 40, 56, 80, 112, 160]


def backgrounds(w: int, h: int) -> list[np.ndarray]:
    dogs = cv2.imread(str(SHARED / "data" / "dlib_faces" / "images" / "dogs.jpg"))
    bird = cv2.imread(str(SHARED / "data" / "test_images" / "bird.bmp"))
    out = [cv2.resize(dogs, (w, h)), cv2.flip(cv2.resize(dogs, (w, h)), 1), empty_room(w, h)]
    out += [cv2.resize(bird, (w, h)), cv2.resize(cv2.flip(bird, 0), (w, h))]
    rng = np.random.default_rng(5)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (5, 5), 0)
    out.append(cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


def face_photos(every: int, offset: int, near: FaceModels) -> list[tuple[np.ndarray, np.ndarray]]:
    """(photo, face box relative to the photo's side) for a slice of muxspace; the box is
    BlazeFace's (brows to chin), so a face "W px wide" is that box at W px."""
    folder = SHARED / "data" / "muxspace"
    with (folder / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))[offset::every]
    out = []
    for row in rows:
        img = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
        found = near.detector.detect(img) if img is not None else []
        if found:
            best = max(found, key=lambda d: d.box[2] * d.box[3])
            out.append((img, best.box / img.shape[1]))
    return out


def build(workdir: Path, size: tuple[int, int], photos, per_frame: int = 6, frames_per_width: int = 4):
    w, h = size
    bgs = backgrounds(w, h)
    rng = np.random.default_rng(11)
    items = []
    k = 0
    for width in WIDTHS:
        for n in range(frames_per_width):
            frame = bgs[(n + width) % len(bgs)].copy()
            truth = []
            cols = per_frame
            for j in range(per_frame):
                photo, rel = photos[k % len(photos)]
                k += 1
                side = max(8, round(width / rel[2]))  # the photo scaled so its face is `width` wide
                img = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
                cell = w // cols
                x = j * cell + int(rng.integers(0, max(1, cell - side)))
                y = int(rng.integers(h // 8, max(h // 8 + 1, h - side)))
                x, y = min(x, w - side), min(y, h - side)
                frame[y : y + side, x : x + side] = img
                truth.append([x + rel[0] * side, y + rel[1] * side, rel[2] * side, rel[3] * side])
            path = workdir / f"w{width:03d}_{n}.jpg"
            cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
            items.append((path, width, np.array(truth, np.float32)))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default=".cache/small_faces")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--every", type=int, default=7, help="use every Nth muxspace photo")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--threshold", type=float)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models_dir = default_models_dir()
    near = FaceModels.from_settings(models_dir, DetectorConfig(model="short_range"))
    items = build(work, size, face_photos(args.every, args.offset, near))
    dcfg = DetectorConfig(model=args.detector, score_threshold=args.threshold)
    models = FaceModels.from_settings(models_dir, dcfg)
    yunet = cv2.FaceDetectorYN.create(str(models_dir / "face_detection_yunet_2023mar.onnx"), "", size, 0.6)
    per_width: dict[int, list[int]] = {}
    false_faces, ours_ms, ref_ms, ref_hits = 0, [], [], {}
    for path, width, truth in items:
        t = time.perf_counter()
        faces = models.analyse_image(cv2.imread(str(path)))
        ours_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        _, ref = yunet.detect(cv2.imread(str(path)))
        ref_ms.append((time.perf_counter() - t) * 1000)
        if ref is not None:
            r = iou_matrix(truth, ref[:, :4].astype(np.float32)) >= 0.3
            ref_hits[width] = ref_hits.get(width, 0) + int(r.any(axis=1).sum())
        found = np.array([f["box"] for f in faces], np.float32).reshape(-1, 4)
        hit = iou_matrix(truth, found) >= 0.3 if len(found) else np.zeros((len(truth), 0), bool)
        per_width.setdefault(width, [0, 0])
        per_width[width][0] += int(hit.any(axis=1).sum())
        per_width[width][1] += len(truth)
        false_faces += int((~hit.any(axis=0)).sum()) if len(found) else 0
    print(
        json.dumps(
            {
                "frames": len(items),
                "size": args.size,
                "detector": args.detector,
                "recall_by_width": {w: round(a / b, 3) for w, (a, b) in sorted(per_width.items())},
                "false_faces_per_frame": round(false_faces / len(items), 3),
                "ms_per_frame": round(statistics.median(ours_ms), 1),
                "yunet_whole_frame_ms": round(statistics.median(ref_ms), 1),
                "yunet_whole_frame_recall_at_0.6": {
                    w: round(ref_hits.get(w, 0) / b, 3) for w, (_a, b) in sorted(per_width.items())
                },
            }
        )
    )


if __name__ == "__main__":
    main()
