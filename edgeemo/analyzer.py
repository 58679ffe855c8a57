"""The analysis chain, built in one place: detect → track → classify → aggregate.

- :class:`FaceModels` is a face detector and an emotion classifier, opened together. It is the
  only place either is constructed, and its :meth:`FaceModels.analyse_image` reads one still
  image (``edgeemo detect``, HTTP ``/predict``).
- :class:`FrameAnalyzer` is one camera's chain over time: tracker, aggregator and motion gate
  around a ``FaceModels``. The daemon, ``bench`` and the tests all drive this same object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeemo.aggregator import CameraAggregator, Observation
from edgeemo.classifier import EmotionClassifier
from edgeemo.config import Config, DetectorConfig, EmotionConfig, InferenceConfig
from edgeemo.detectors import Detection, FaceDetector, make_detector
from edgeemo.modelstore import ResolvedModel, open_model, resolve
from edgeemo.motion import MotionGate
from edgeemo.tracker import IoUTracker


def resolve_detector(dcfg: DetectorConfig, models_dir: Path) -> ResolvedModel:
    return resolve(dcfg.model, models_dir, "face_detection", {"edgetpu": dcfg.edgetpu_model})


def resolve_emotion(ecfg: EmotionConfig, models_dir: Path) -> ResolvedModel:
    return resolve(ecfg.model, models_dir, "emotion", {"edgetpu": ecfg.edgetpu_model})


def open_detector(
    model: ResolvedModel, cfg: DetectorConfig, inference: InferenceConfig, what: str = ""
) -> FaceDetector:
    """The one place a face detector is made: the manifest's decoder over the opened model."""
    return make_detector(open_model(model, inference, f"{what} detector".strip()), model.manifest, cfg)


def open_classifier(
    model: ResolvedModel, cfg: EmotionConfig, inference: InferenceConfig, what: str = ""
) -> EmotionClassifier:
    """The one place an emotion classifier is made."""
    return EmotionClassifier(
        open_model(model, inference, f"{what} emotion model".strip()), model.manifest, cfg.crop_margin
    )


@dataclass
class FaceModels:
    detector: FaceDetector
    classifier: EmotionClassifier

    @classmethod
    def open(
        cls,
        detector: tuple[ResolvedModel, DetectorConfig],
        emotion: tuple[ResolvedModel, EmotionConfig],
        inference: InferenceConfig,
        what: str = "",
    ) -> FaceModels:
        """Open both models on the configured backend (``what`` prefixes log lines: "camera x")."""
        return cls(open_detector(*detector, inference, what), open_classifier(*emotion, inference, what))

    @classmethod
    def from_settings(
        cls,
        models_dir: Path,
        detector: DetectorConfig | None = None,
        emotion: EmotionConfig | None = None,
        inference: InferenceConfig | None = None,
    ) -> FaceModels:
        """Resolve and open in one step, with defaults for what is not given (tools, tests)."""
        dcfg, ecfg = detector or DetectorConfig(), emotion or EmotionConfig()
        return cls.open(
            (resolve_detector(dcfg, models_dir), dcfg),
            (resolve_emotion(ecfg, models_dir), ecfg),
            inference or InferenceConfig(),
        )

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def analyse_image(self, image: np.ndarray) -> list[dict]:
        """One still image: each face found, with its box, score, emotion and scores."""
        image = as_bgr(image)
        dets = self.detector.detect(image)
        probs = self.classifier.classify(image, [d.box for d in dets])
        return [
            {
                "box": [round(float(v)) for v in d.box],
                "score": round(d.score, 3),
                "emotion": self.labels[int(p.argmax())],
                "scores": {label: round(float(v), 4) for label, v in zip(self.labels, p, strict=True)},
            }
            for d, p in zip(dets, probs, strict=True)
        ]


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Gray or BGRA frames (some cameras, PNGs) as the BGR the models expect."""
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


@dataclass
class Analysis:
    """What one frame gave."""

    events: list[dict]
    analysed: bool  # False: skipped (motion gate, or every face still); the last analysis stands
    boxes: np.ndarray  # faces found in it (analysed) or still tracked (skipped), (N, 4) x, y, w, h
    detect_ms: float | None = None
    classify_ms: float | None = None  # per face
    detections: list[Detection] = field(default_factory=list)


class FrameAnalyzer:
    """One camera's analysis over time. Not thread-safe: one camera loop drives it."""

    def __init__(self, camera: str, models: FaceModels, cfg: Config) -> None:
        self.camera = camera
        self.models = models
        self.tracker = IoUTracker(cfg.tracker)
        self.aggregator = CameraAggregator(camera, models.labels, cfg.aggregator)
        self.gate = MotionGate(cfg.motion) if cfg.motion.enabled else None
        self.skipped = 0  # frames not analysed (motion gate or steady faces)
        self._since_analysis = 0
        self._last_obs: list[Observation] = []  # the last analysis, standing for skipped frames

    @classmethod
    def for_camera(cls, cfg: Config, camera: str, models_dir: Path) -> FrameAnalyzer:
        """Resolve and open the camera's models from ``cfg`` (tools and tests; the daemon
        resolves everything first, before any camera opens)."""
        cam = next(c for c in cfg.cameras if c.name == camera)
        dcfg = cfg.detector_for(cam)
        models = FaceModels.open(
            (resolve_detector(dcfg, models_dir), dcfg),
            (resolve_emotion(cfg.emotion, models_dir), cfg.emotion),
            cfg.inference,
            f"camera {camera}",
        )
        return cls(camera, models, cfg)

    def process(self, image: np.ndarray, ts: float) -> Analysis:
        image = as_bgr(image)
        tracks = self.tracker.tracks
        steady_skip = self._since_analysis + 1 < self.tracker.cfg.steady_every and self.tracker.all_steady()
        if steady_skip or (
            self.gate is not None
            # A new face must be seen again to be confirmed; analyse until it is.
            and all(t.confirmed for t in tracks)
            and self.gate.unchanged(image, ts, {t.id: t.box for t in tracks})
        ):
            # Nothing changed (the gate), or every face is known and still: the last analysis
            # stands for this frame, so its faces count as seen and their observations again,
            # and a face it missed goes on ageing out.
            self._since_analysis += 1
            self.skipped += 1
            held = [ob for ob in self._last_obs if ob.track in tracks]  # faces the last analysis saw
            ended = self.tracker.hold(ts, [ob.track for ob in held])
            boxes = _boxes([t.box for t in self.tracker.tracks])
            return Analysis(self.aggregator.observe(ts, held, ended), False, boxes)
        self._since_analysis = 0
        t0 = time.perf_counter()
        dets = self.models.detector.detect(image)
        t1 = time.perf_counter()
        matched, ended = self.tracker.match(ts, dets)
        probs = self.models.classifier.classify(image, [dets[i].box for _, i in matched])
        t2 = time.perf_counter()
        obs = [Observation(t, probs[k], dets[i].score, dets[i].size) for k, (t, i) in enumerate(matched)]
        self._last_obs = obs
        if self.gate is not None:
            self.gate.analysed(
                image, ts, {t.id: t.box for t in self.tracker.tracks}, {t.id for t, _ in matched}
            )
        return Analysis(
            self.aggregator.observe(ts, obs, ended),
            True,
            _boxes([d.box for d in dets]),
            (t1 - t0) * 1000,
            (t2 - t1) * 1000 / len(matched) if matched else None,
            dets,
        )

    def idle(self, ts: float) -> list[dict]:
        """No frame came (camera offline or stalled): faces age out on the clock, so nobody
        stays "in view" of a camera that cannot see."""
        _, ended = self.tracker.match(ts, [])
        return self.aggregator.observe(ts, [], ended)

    def end(self, ts: float) -> list[dict]:
        """The stream has ended: every visit ends now."""
        return self.aggregator.observe(ts, [], self.tracker.end_all())

    def state(self, ts: float) -> dict:
        return self.aggregator.state(ts)

    def state_changed(self) -> bool:
        return self.aggregator.state_changed()


def _boxes(boxes: list[np.ndarray]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)
