#!/usr/bin/env python3
"""Recall by face width on security-camera-like frames, measured as a user runs `edgeemo detect`.

Builds 1920x1080 (or --size) JPEG frames (quality 80), six faces per frame pasted at one known
width, for widths 20..160 px, then runs ``edgeemo detect --json`` on them (a subprocess, default
settings) and, in the same run, OpenCV's ``FaceDetectorYN`` (YuNet, opencv_zoo 2023mar, score
0.6, as in issue 15's table) on each whole frame as the cost reference. Both are pinned to one
core (taskset) and timed the same way: the time between one image's output line and the next,
so a frame's cost includes reading and decoding its JPEG. Rounds alternate the two so a shared
machine's drift hits both. Prints one JSON object.

Sets (--set):
  heldout  colour faces with their own surroundings (hair, shoulders), feathered into the frame:
           the 43 hand-boxed faces of ../shared/data/dlib_faces, Coral's face.jpg and
           grace_hopper.bmp, scikit-image's astronaut; backgrounds from scikit-image (coffee,
           a cat, a rocket launch, brick, grass, gravel). Nothing here was used to tune edgeemo.
  dev      the development set: grey, tightly cropped muxspace photos (every 7th) pasted as
           squares over dogs, a bird, the empty test room and a noise texture.

A face counts as found when a box overlaps it at IoU >= 0.3. A box that overlaps no pasted face
(nor another real face that came along in a pasted patch, which is ignored) is a false face.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WIDTHS = [20, 28, 40, 56, 80, 112, 160]
CONTEXT = 2.2  # a held-out patch is this many face widths wide: hair, ears, neck, some shoulder
IOU = 0.3


@dataclass
class Item:
    path: Path
    width: int
    truth: np.ndarray  # (N, 4) x, y, w, h of the pasted faces
    ignore: np.ndarray  # (M, 4) other real faces that came along inside a patch


# ---------------------------------------------------------------------------------------- sets


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)


BACKGROUNDS = ["coffee", "chelsea", "rocket", "brick", "grass", "gravel"]
# --seed other than the default: other backgrounds and placements, for a second look at
# settings chosen while watching the first.
OTHER_BACKGROUNDS = ["hubble_deep_field", "immunohistochemistry", "coins", "moon", "page", "clock"]
DEFAULT_SEED = 2026


def heldout_backgrounds(w: int, h: int, names: list[str]) -> list[np.ndarray]:
    return [cv2.resize(_skimage(n), (w, h), interpolation=cv2.INTER_CUBIC) for n in names]


def heldout_faces() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(photo, face box, other face boxes in the photo) for every held-out face."""
    folder = SHARED / "data" / "dlib_faces"
    with (folder / "boxes.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["ignore"] == "0"]
    photos: dict[str, np.ndarray] = {}
    out = []
    for r in rows:
        img = photos.setdefault(r["file"], cv2.imread(str(folder / r["file"])))
        boxes = np.array([[float(q[k]) for k in "xywh"] for q in rows if q["file"] == r["file"]], np.float32)
        own = np.array([float(r[k]) for k in "xywh"], np.float32)
        others = boxes[~np.all(boxes == own, axis=1)]
        out.append((img, own, others))
    # One-face photos: the box is BlazeFace's on the photo (brows to chin, like dlib's boxes).
    from edgeemo.analyzer import FaceModels
    from edgeemo.config import DetectorConfig
    from edgeemo.modelstore import default_models_dir

    near = FaceModels.from_settings(default_models_dir(), DetectorConfig(model="short_range")).detector
    singles = [cv2.imread(str(SHARED / "data" / "test_images" / n)) for n in ("face.jpg", "grace_hopper.bmp")]
    singles.append(_skimage("astronaut"))
    for img in singles:
        found = near.detect(img)
        if found:
            best = max(found, key=lambda d: d.box[2] * d.box[3])
            out.append((img, best.box.astype(np.float32), np.zeros((0, 4), np.float32)))
    return out


def _patch(
    photo: np.ndarray, box: np.ndarray, width: int, limit: int
) -> tuple[np.ndarray, float, float, float]:
    """The face and its surroundings, scaled so the face is ``width`` px wide and the patch at
    most ``limit``: (patch, scale, the patch's top-left corner in the photo's pixels)."""
    x, y, w, h = (float(v) for v in box)
    side = min(CONTEXT * max(w, h), limit * w / width)
    x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2 + 0.1 * h  # a little more below: neck
    k = width / w
    # Crop (outside the photo: its edges replicated), then scale: averaging pixels when
    # shrinking, as a camera's optics and sensor would.
    shift = np.array([[1, 0, -x0], [0, 1, -y0]], np.float32)
    crop = cv2.warpAffine(photo, shift, (round(side), round(side)), borderMode=cv2.BORDER_REPLICATE)
    out = round(side * k)
    img = cv2.resize(crop, (out, out), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    k = out / round(side)  # the scale actually applied
    return img, k, x0, y0


def _feather(n: int) -> np.ndarray:
    """An alpha mask, 1 in the middle and fading to 0 over the outer fifth of the patch."""
    r = np.minimum(np.arange(n), np.arange(n)[::-1]) / max(1.0, n * 0.2)
    ramp = np.clip(r, 0, 1)
    return (np.minimum(ramp[:, None], ramp[None, :]))[..., None].astype(np.float32)


def build_heldout(
    work: Path,
    size: tuple[int, int],
    per_frame: int = 6,
    frames_per_width: int = 6,
    seed: int = DEFAULT_SEED,
    widths: list[int] = WIDTHS,
) -> list[Item]:
    w, h = size
    bgs = heldout_backgrounds(w, h, BACKGROUNDS if seed == DEFAULT_SEED else OTHER_BACKGROUNDS)
    faces = heldout_faces()
    rng = np.random.default_rng(seed)
    items = []
    for width in widths:
        # No more than 2.5x upscaling: a 37 px face blown up to 160 px is a blur, not a face.
        pool = [f for f in faces if f[1][2] * 2.5 >= width] or faces
        order = rng.permutation(len(pool))
        k = 0
        for n in range(frames_per_width):
            frame = bgs[(n + width) % len(bgs)].astype(np.float32)
            truth, ignore = [], []
            cell = w // per_frame
            for j in range(per_frame):
                photo, box, others = pool[order[k % len(pool)]]
                k += 1
                img, s, px0, py0 = _patch(photo, box, width, cell)
                side = img.shape[0]
                x = j * cell + int(rng.integers(0, max(1, cell - side)))
                y = int(rng.integers(h // 10, max(h // 10 + 1, h - side)))
                x, y = min(x, w - side), min(y, h - side)
                a = _feather(side)
                frame[y : y + side, x : x + side] = a * img + (1 - a) * frame[y : y + side, x : x + side]

                def to_frame(b: np.ndarray, x=x, y=y, s=s, px0=px0, py0=py0) -> list[float]:
                    return [x + (b[0] - px0) * s, y + (b[1] - py0) * s, b[2] * s, b[3] * s]

                truth.append(to_frame(box))
                ignore += [to_frame(o) for o in others]
            frame += rng.normal(0, 2.0, frame.shape)  # a camera's sensor noise
            path = work / f"w{width:03d}_{n}.jpg"
            cv2.imwrite(str(path), np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80])
            items.append(
                Item(path, width, np.array(truth, np.float32), np.array(ignore, np.float32).reshape(-1, 4))
            )
    return items


def dev_backgrounds(w: int, h: int) -> list[np.ndarray]:
    from edgeemo.tools.devtools import empty_room

    dogs = cv2.imread(str(SHARED / "data" / "dlib_faces" / "images" / "dogs.jpg"))
    bird = cv2.imread(str(SHARED / "data" / "test_images" / "bird.bmp"))
    out = [cv2.resize(dogs, (w, h)), cv2.flip(cv2.resize(dogs, (w, h)), 1), empty_room(w, h)]
    out += [cv2.resize(bird, (w, h)), cv2.resize(cv2.flip(bird, 0), (w, h))]
    rng = np.random.default_rng(5)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (5, 5), 0)
    out.append(cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


def build_dev(work: Path, size: tuple[int, int], per_frame: int = 6, frames_per_width: int = 4) -> list[Item]:
    """muxspace photos (every 7th) whose BlazeFace box is scaled to each width, pasted as squares."""
    from edgeemo.analyzer import FaceModels
    from edgeemo.config import DetectorConfig
    from edgeemo.modelstore import default_models_dir

    near = FaceModels.from_settings(default_models_dir(), DetectorConfig(model="short_range")).detector
    folder = SHARED / "data" / "muxspace"
    with (folder / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))[::7]
    photos = []
    for row in rows:
        img = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
        found = near.detect(img) if img is not None else []
        if found:
            best = max(found, key=lambda d: d.box[2] * d.box[3])
            photos.append((img, best.box / img.shape[1]))
    w, h = size
    bgs = dev_backgrounds(w, h)
    rng = np.random.default_rng(11)
    items, k = [], 0
    for width in WIDTHS:
        for n in range(frames_per_width):
            frame = bgs[(n + width) % len(bgs)].copy()
            truth = []
            for j in range(per_frame):
                photo, rel = photos[k % len(photos)]
                k += 1
                side = max(8, round(width / rel[2]))
                img = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
                cell = w // per_frame
                x = j * cell + int(rng.integers(0, max(1, cell - side)))
                y = int(rng.integers(h // 8, max(h // 8 + 1, h - side)))
                x, y = min(x, w - side), min(y, h - side)
                frame[y : y + side, x : x + side] = img
                truth.append([x + rel[0] * side, y + rel[1] * side, rel[2] * side, rel[3] * side])
            path = work / f"w{width:03d}_{n}.jpg"
            cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
            items.append(Item(path, width, np.array(truth, np.float32), np.zeros((0, 4), np.float32)))
    return items


# ------------------------------------------------------------------------------------ running


def timed_lines(cmd: list[str], files: list[Path], core: int | None) -> tuple[list[dict], list[float]]:
    """Run ``cmd`` on [files[0]] + files (the first pass warms up and loads the models), one JSON
    line per image back; the time between lines is each image's cost, decode included."""
    pin = ["taskset", "-c", str(core)] if core is not None else []
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [*pin, *cmd, str(files[0]), *map(str, files)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    stamps, out = [], []
    for line in proc.stdout:
        stamps.append(time.perf_counter())
        out.append(json.loads(line))
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    if len(out) != len(files) + 1:
        raise SystemExit(f"{' '.join(cmd)}: {len(out)} lines for {len(files) + 1} images")
    return out[1:], [1000 * (b - a) for a, b in itertools.pairwise(stamps)]


def score(items: list[Item], outputs: list[dict]) -> dict:
    from edgeemo.detectors import iou_matrix

    hits: dict[int, list[int]] = {}
    false = 0
    for item, out in zip(items, outputs, strict=True):
        found = np.array([f["box"] for f in out["faces"]], np.float32).reshape(-1, 4)
        m = iou_matrix(item.truth, found) >= IOU if len(found) else np.zeros((len(item.truth), 0), bool)
        h = hits.setdefault(item.width, [0, 0])
        h[0] += int(m.any(axis=1).sum())
        h[1] += len(item.truth)
        if len(found):
            known = m.any(axis=0)
            if len(item.ignore):
                known |= (iou_matrix(item.ignore, found) >= IOU).any(axis=0)
            false += int((~known).sum())
    return {
        "recall_by_width": {w: round(a / b, 3) for w, (a, b) in sorted(hits.items())},
        "false_faces_per_frame": round(false / len(items), 3),
    }


def reference(files: list[str], threshold: float) -> None:
    """OpenCV's FaceDetectorYN on each whole image: one JSON line per image, like detect --json."""
    from edgeemo.modelstore import catalog, default_models_dir

    model = default_models_dir() / catalog()["yunet"].file
    det = cv2.FaceDetectorYN.create(str(model), "", (320, 320), threshold)
    for f in files:
        img = cv2.imread(f)
        det.setInputSize((img.shape[1], img.shape[0]))
        _, faces = det.detect(img)
        boxes = [] if faces is None else [{"box": [round(float(v)) for v in r[:4]]} for r in faces]
        print(json.dumps({"image": f, "faces": boxes}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=["heldout", "dev"], default="heldout")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="heldout: placements (and backgrounds)")
    ap.add_argument("--workdir", help="where the frames go (default .cache/small_faces/<set>-<size>)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, edgeemo and YuNet alternating")
    ap.add_argument("--core", type=int, default=0, help="the core both run on (-1: not pinned)")
    ap.add_argument("--detect-args", default="", help="extra arguments for edgeemo detect")
    ap.add_argument("--reference", nargs="+", metavar="IMAGE", help=argparse.SUPPRESS)
    ap.add_argument("--reference-threshold", type=float, default=0.6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference:
        reference(args.reference, args.reference_threshold)
        return
    size = tuple(int(v) for v in args.size.split("x"))
    name = f"{args.set}-{args.size}" + (f"-{args.seed}" if args.seed != DEFAULT_SEED else "")
    work = Path(args.workdir or ROOT / ".cache" / "small_faces" / name)
    work.mkdir(parents=True, exist_ok=True)
    items = build_heldout(work, size, seed=args.seed) if args.set == "heldout" else build_dev(work, size)
    files = [i.path for i in items]
    core = None if args.core < 0 else args.core
    ours_cmd = [sys.executable, "-m", "edgeemo", "detect", "--json", *args.detect_args.split()]
    ref_cmd = [sys.executable, str(Path(__file__).resolve()), "--reference"]
    ours_ms, ref_ms, per_round = [], [], []
    for r in range(args.rounds):
        ours_out, ms = timed_lines(ours_cmd, files, core)
        ref_out, rms = timed_lines(ref_cmd, files, core)
        ours_ms += ms
        ref_ms += rms
        per_round.append([round(statistics.median(ms), 1), round(statistics.median(rms), 1)])
        if r == 0:
            ours, ref = score(items, ours_out), score(items, ref_out)
    print(
        json.dumps(
            {
                "set": args.set,
                "size": args.size,
                "seed": args.seed if args.set == "heldout" else None,
                "frames": len(items),
                "faces_per_width": len(items) // len(WIDTHS) * len(items[0].truth),
                "edgeemo_detect": ours
                | {
                    "ms_per_frame_median": round(statistics.median(ours_ms), 1),
                    "ms_per_frame_p95": round(float(np.percentile(ours_ms, 95)), 1),
                },
                "yunet_whole_frame_0.6": ref
                | {
                    "ms_per_frame_median": round(statistics.median(ref_ms), 1),
                    "ms_per_frame_p95": round(float(np.percentile(ref_ms, 95)), 1),
                },
                "median_ms_per_round_edgeemo_vs_yunet": per_round,
                "pinned_core": core,
            }
        )
    )


if __name__ == "__main__":
    main()
