"""`edgeemo eval`: measure an emotion model exactly as the daemon runs it.

Images go through the daemon's own ``EmotionClassifier`` (same preprocessing, same backend),
so a number printed here is the number the appliance gets on such crops.
"""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edgeemo.analyzer import FaceModels
from edgeemo.classifier import EmotionClassifier, square_crop
from edgeemo.detectors.base import reading_stills
from edgeemo.errors import EvalError
from edgeemo.ferdata import FER2013_CLASSES, ferplus_majority

__all__ = ["EvalError", "calibration", "load_npz", "photos_end_to_end", "predict", "robustness", "scores"]


def load_npz(path: Path, labels_from: str) -> tuple[np.ndarray, np.ndarray]:
    """→ uint8 images (N, H, W) and FER2013-ordered labels; FER+ mode drops unlabelled rows."""
    what = (
        "an image: eval scores an emotion model on a labelled set; for one image use `edgeemo detect IMAGE`"
        if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
        else "not a readable .npz file with arrays images (uint8 N×H×W) and labels"
    )
    if not path.is_file():
        raise EvalError(f"{path}: no such file")
    try:
        d = np.load(path)  # allow_pickle stays off: numpy's own message then talks of pickles
    except (OSError, ValueError):
        raise EvalError(f"{path}: {what}") from None
    if not isinstance(d, np.lib.npyio.NpzFile):
        raise EvalError(f"{path}: {what}")
    with d:
        missing = [k for k in ("images", "labels") if k not in d.files]
        if labels_from == "ferplus" and "ferplus_votes" not in d.files:
            missing.append("ferplus_votes")
        if missing:
            raise EvalError(f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(d.files)})")
        images = d["images"]
        labels = d["ferplus_votes"] if labels_from == "ferplus" else d["labels"]
        if images.dtype != np.uint8 or images.ndim != 3:
            raise EvalError(f"{path}: images must be uint8 N×H×W, got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise EvalError(f"{path}: no images in it")
        if len(labels) != len(images):
            raise EvalError(f"{path}: {len(images)} images but {len(labels)} labels")
        if labels_from == "ferplus":
            labels = ferplus_majority(labels)
            keep = labels >= 0
            return images[keep], labels[keep]
        labels = labels.astype(np.int64)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(FER2013_CLASSES):
            raise EvalError(f"{path}: labels must be 0..6 in FER2013 order")
        return images, labels


def to_fer2013_order(classifier: EmotionClassifier) -> np.ndarray:
    """Column index in the model's output for each FER2013 class (models may order labels freely)."""
    try:
        return np.array([classifier.labels.index(c) for c in FER2013_CLASSES])
    except ValueError:
        raise EvalError(
            f"model labels {classifier.labels} do not cover the FER2013 classes {list(FER2013_CLASSES)}"
        ) from None


def predict(classifier: EmotionClassifier, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Probabilities (N, 7) in FER2013 order."""
    cols = to_fer2013_order(classifier)
    out = [classifier.classify_crops(list(images[i : i + batch])) for i in range(0, len(images), batch)]
    return np.concatenate(out)[:, cols]


def ms_per_face(classifier: EmotionClassifier, images: np.ndarray, n: int = 500) -> tuple[float, float]:
    """Median and mean wall time of one face through preprocessing and the model (batch of
    one). The mean is the expected cost where it depends on the face (the early exit: the
    median face needs one network, a quarter need two)."""
    warmup, times = 20, []
    for i in range(n + warmup):
        img = images[i % len(images)]
        t = time.perf_counter()
        classifier.classify_crops([img])
        times.append(time.perf_counter() - t)
    kept = times[warmup:]  # the first calls warm caches up
    return float(np.median(kept) * 1000), float(np.mean(kept) * 1000)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    k = len(FER2013_CLASSES)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y_true, y_pred), 1)
    tp = np.diag(conf).astype(np.float64)
    recall = np.divide(tp, conf.sum(1), out=np.zeros(k), where=conf.sum(1) > 0)
    precision = np.divide(tp, conf.sum(0), out=np.zeros(k), where=conf.sum(0) > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0
    )
    present = conf.sum(1) > 0
    return {
        "n": len(y_true),
        "accuracy": round(float(tp.sum() / max(1, len(y_true))), 4),
        "macro_f1": round(float(f1[present].mean()) if present.any() else 0.0, 4),
        "per_class_recall": {c: round(float(r), 4) for c, r in zip(FER2013_CLASSES, recall, strict=True)},
        "confusion": conf.tolist(),
    }


def calibration(y_true: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """How far the top score is from being a probability: expected calibration error (the
    mean gap between confidence and accuracy over 10 equal-width confidence bins, weighted by
    their size), the mean top score, and the mean sum of a face's scores (1.0 if they are
    probabilities)."""
    top = probs.max(axis=1)
    right = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (top > lo) & (top <= hi)
        if inside.any():
            ece += inside.mean() * abs(float(right[inside].mean()) - float(top[inside].mean()))
    return {
        "ece": round(ece, 4),
        "mean_confidence": round(float(top.mean()), 4),
        "max_confidence": round(float(top.max()), 4),
        "mean_score_sum": round(float(probs.sum(axis=1).mean()), 4),
    }


# --- robustness: what a buyer asks -----------------------------------------------------------


def _rotate(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img


def _contrast(img: np.ndarray, k: float) -> np.ndarray:
    m = img.mean()
    return np.clip((img.astype(np.float32) - m) * k + m, 0, 255).astype(np.uint8)


def _occlude(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey square over a third of the face's width at a random place (hand, mug, scarf)."""
    h, w = img.shape
    s = w // 3
    y, x = rng.integers(0, h - s), rng.integers(0, w - s)
    out = img.copy()
    out[y : y + s, x : x + s] = 128
    return out


def perturbations(seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "clean": lambda x: x,
        "brighter_+40": lambda x: np.clip(x.astype(np.int16) + 40, 0, 255).astype(np.uint8),
        "darker_-40": lambda x: np.clip(x.astype(np.int16) - 40, 0, 255).astype(np.uint8),
        "contrast_x0.5": lambda x: _contrast(x, 0.5),
        "blur_sigma1": lambda x: cv2.GaussianBlur(x, (5, 5), 1.0),
        "jpeg_q20": lambda x: _jpeg(x, 20),
        "rotate_+15": lambda x: _rotate(x, 15),
        "rotate_-15": lambda x: _rotate(x, -15),
        "occlusion_1/3": lambda x: _occlude(x, rng),
        "hflip": lambda x: x[:, ::-1].copy(),
    }


def robustness(classifier: EmotionClassifier, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    out = {}
    for name, fn in perturbations(seed).items():
        pred = predict(classifier, np.stack([fn(x) for x in images])).argmax(1)
        s = scores(labels, pred)
        out[name] = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
    return out


def photos_end_to_end(models: FaceModels, folder: Path) -> dict:
    """Detector + classifier on labelled photos (``labels.csv``: file, label_idx in FER2013 order).

    The largest face found is the one scored; a photo with no face counts as missed.
    """
    table = folder / "labels.csv"
    if not table.is_file():
        raise EvalError(f"{folder}: no labels.csv (columns file,label_idx) in the photo folder")
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    classifier = models.classifier
    cols = to_fer2013_order(classifier)
    truth, pred, missed = [], [], 0
    for row in rows:
        img = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise EvalError(f"{folder / row['file']}: not a readable image")
        with reading_stills():
            dets = models.detector.detect(img)
        if not dets:
            missed += 1
            continue
        best = max(dets, key=lambda d: d.box[2] * d.box[3])
        crop = square_crop(img, best.box, classifier.margin)
        pred.append(int(classifier.classify_crops([crop])[0][cols].argmax()))
        truth.append(int(row["label_idx"]))
    s = scores(np.array(truth, dtype=np.int64), np.array(pred, dtype=np.int64))
    return {
        "photos": len(rows),
        "faces_found": round(1 - missed / max(1, len(rows)), 4),
        "accuracy_on_found": s["accuracy"],
        "macro_f1_on_found": s["macro_f1"],
        "accuracy_end_to_end": round(s["accuracy"] * (1 - missed / max(1, len(rows))), 4),
    }


def plot_confusion(conf: list[list[int]], path: Path, title: str) -> None:
    """A labelled, row-normalised confusion matrix as a PNG (OpenCV only: no plotting stack)."""
    m = np.array(conf, dtype=np.float64)
    norm = m / np.maximum(1, m.sum(1, keepdims=True))
    k, cell, left, top = len(FER2013_CLASSES), 70, 110, 80
    img = np.full((top + k * cell + 60, left + k * cell + 20, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title[:60], (10, 28), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(k):
        for j in range(k):
            shade = int(255 * (1 - norm[i, j]))
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (200, 200, 200), 1)
            colour = (255, 255, 255) if norm[i, j] > 0.5 else (0, 0, 0)
            cv2.putText(img, f"{norm[i, j]:.2f}", (x0 + 12, y0 + 32), font, 0.5, colour, 1, cv2.LINE_AA)
            cv2.putText(img, str(int(m[i, j])), (x0 + 12, y0 + 52), font, 0.4, colour, 1, cv2.LINE_AA)
        cv2.putText(img, FER2013_CLASSES[i], (8, top + i * cell + 40), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(
            img, FER2013_CLASSES[i][:7], (left + i * cell + 4, top - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    cv2.putText(
        img,
        "rows: true class, columns: predicted (share of row, count)",
        (10, top + k * cell + 35),
        font,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    if not cv2.imwrite(str(path), img):
        raise EvalError(f"{path}: cannot write the plot there")
