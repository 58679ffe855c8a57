"""The analysis chain, built in one place: detect → track → classify → aggregate.

- :class:`FaceModels` is a face detector and an emotion classifier, opened together. It is the
  only place either is constructed, and its :meth:`FaceModels.analyse_image` reads one still
  image (``edgeemo detect``, HTTP ``/predict``).
- :class:`FrameAnalyzer` is one camera's chain over time: tracker, aggregator and motion gate
  around a ``FaceModels``. The daemon, ``bench`` and the tests all drive this same object.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeemo import cadence
from edgeemo.aggregator import CameraAggregator, Observation
from edgeemo.backends import Model, backend_module
from edgeemo.classifier import EmotionClassifier
from edgeemo.config import Config, DetectorConfig, EmotionConfig, InferenceConfig
from edgeemo.detectors import Detection, FaceDetector, make_detector
from edgeemo.detectors.base import reading_stills
from edgeemo.detectors.multiscale import SMALL_THRESHOLD, MultiScaleDetector
from edgeemo.early_exit import EarlyExitModel
from edgeemo.errors import ModelError
from edgeemo.modelstore import ResolvedModel, open_model, resolve
from edgeemo.motion import THUMB, MotionGate
from edgeemo.tracker import IoUTracker
from edgeemo.zones import CameraZones

log = logging.getLogger(__name__)


AUTO, NEAR_MODEL, SMALL_MODEL = "auto", "short_range", "yunet"
TRACKED_CONTEXT = 3.0  # a tracked face is looked for again in a box this many times its size
# A whole-frame scan of a picture that changed only where tracked near people are waits, up to
# this many times detector.full_frame_every_s (5 s → 15 s): longer, and a far face appearing
# beside a moving near person waits too long.
SCAN_STRETCH = 3


@dataclass
class DetectorModels:
    """The model(s) behind a detector setting: one, or for ``auto`` a near- and a small-face one."""

    near: ResolvedModel
    small: ResolvedModel | None = None
    small_missing: str | None = None  # auto without its small-face model: why (said at open)


def resolve_detector(dcfg: DetectorConfig, models_dir: Path) -> DetectorModels:
    overrides = {"edgetpu": dcfg.edgetpu_model}
    if dcfg.model != AUTO:
        return DetectorModels(resolve(dcfg.model, models_dir, "face_detection", overrides))
    near = resolve(NEAR_MODEL, models_dir, "face_detection", overrides)
    try:
        return DetectorModels(near, resolve(SMALL_MODEL, models_dir, "face_detection"))
    except ModelError as e:
        # Still useful without it (near faces), so run, but say plainly what is missed.
        return DetectorModels(near, None, str(e))


def resolve_emotion(ecfg: EmotionConfig, models_dir: Path) -> ResolvedModel:
    return resolve(ecfg.model, models_dir, "emotion", {"edgetpu": ecfg.edgetpu_model})


def open_detector(
    models: DetectorModels, cfg: DetectorConfig, inference: InferenceConfig, what: str = ""
) -> FaceDetector:
    """The one place a face detector is made: each model's manifest names its decoder."""
    label = f"{what} detector".strip()
    near = make_detector(open_model(models.near, inference, label), models.near.manifest, cfg)
    if cfg.model != AUTO:
        return near
    small = None
    if models.small is not None:
        small_cfg = cfg.model_copy(update={"score_threshold": cfg.score_threshold or SMALL_THRESHOLD})
        small = make_detector(
            open_model(models.small, inference, f"{label} (small faces)"), models.small.manifest, small_cfg
        )
    else:
        log.warning(
            "%s: small faces (under ~100 px in a 1080p picture) will be missed: %s",
            label,
            models.small_missing,
        )
    return MultiScaleDetector(near, small, cfg)


def open_classifier(
    model: ResolvedModel, cfg: EmotionConfig, inference: InferenceConfig, what: str = ""
) -> EmotionClassifier:
    """The one place an emotion classifier is made."""
    label = f"{what} emotion model".strip()
    opened: Model
    if inference.backend == "cpu":
        # The member networks instead of the ensemble file, not both (memory).
        opened = _open_early_exit(model, cfg, inference, label) or open_model(model, inference, label)
    else:
        opened = open_model(model, inference, label)
        if opened.backend == "cpu":
            # An accelerator backend that fell back to the CPU (no Edge TPU twin of the emotion
            # model, say) gets the early exit too; the ensemble opened first is let go.
            opened = _open_early_exit(model, cfg, inference, label) or opened
    return EmotionClassifier(opened, model.manifest, cfg.crop_margin, cfg.min_face_px)


def _open_early_exit(
    model: ResolvedModel, cfg: EmotionConfig, inference: InferenceConfig, label: str
) -> EarlyExitModel | None:
    """The ensemble's member networks behind an early exit, where the manifest has them and
    ``emotion.early_exit`` is on (an Edge TPU or a GPU runs the whole ensemble in about the
    time of one network). None: the ensemble file as opened serves, with a warning where the
    members should have been there."""
    ee = model.manifest.early_exit
    if ee is None or not cfg.early_exit:
        return None
    files = model.member_files
    problem = None
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        problem = f"{', '.join(missing)} not found beside {model.cpu_file.name}"
    else:
        cpu = backend_module("cpu")
        try:
            early = EarlyExitModel([cpu.load(p, **cpu.options(inference)) for p in files], ee.sure, label)
        except ModelError as e:
            problem = str(e)
        else:
            names = " + ".join(p.name for p in files)
            log.info("%s: %s, early exit at %.2f, run on %s", label, names, ee.sure, early.backend)
            return early
    log.warning(
        "%s: %s, so every face is read by all %d networks (emotion.early_exit cannot apply); run "
        "`edgeemo models fetch` in a checkout, or copy them from the release's models/",
        label,
        problem,
        len(files),
    )
    return None


@dataclass
class FaceModels:
    detector: FaceDetector
    classifier: EmotionClassifier

    @classmethod
    def open(
        cls,
        detector: tuple[DetectorModels, DetectorConfig],
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

    def runtimes(self) -> dict[str, str]:
        """What each model runs on ("cpu", "edgetpu", "onnx (CUDAExecutionProvider)"), for the
        stats message and Home Assistant's diagnostics. ``auto``'s two detectors: near + small."""
        det = self.detector
        small = getattr(det, "small", None)
        detector = det.model.describe()
        if small is not None:
            detector = f"{detector} + {small.model.describe()}"
        return {"detector": detector, "emotion": self.classifier.model.describe()}

    def analyse_image(self, image: np.ndarray) -> list[dict]:
        """One still image: each face found, with its box, score, emotion and scores; a face
        narrower than the classifier's ``min_face_px`` is listed with emotion None."""
        image = as_bgr(image)
        with reading_stills():
            dets = self.detector.detect(image)
        readable = [d for d in dets if d.size >= self.classifier.min_face_px]
        read = self.classifier.classify(image, [d.box for d in readable])
        probs = {id(d): p for d, p in zip(readable, read, strict=True)}
        out = []
        for d in dets:
            p = probs.get(id(d))
            out.append(
                {
                    "box": [round(float(v)) for v in d.box],
                    "score": round(d.score, 3),
                    "emotion": None if p is None else self.labels[int(p.argmax())],
                    "scores": None
                    if p is None
                    else {label: round(float(v), 4) for label, v in zip(self.labels, p, strict=True)},
                }
            )
        return out


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
        cam = _camera_cfg(cfg, camera)
        self.zones = CameraZones(camera, cam.masks, cam.zones)
        self.masked = 0  # faces found inside a mask and dropped
        self.full_frame_every_s = cfg.detector_for(cam).full_frame_every_s
        # detect_fps holds for whoever drives this (edgeemo.cadence): the daemon's reader has
        # dropped the frames above it already, bench and tests feed every frame of a clip.
        self.cadence = cadence.Cadence(cam.detect_fps)
        # With auto, BlazeFace refinds near faces on its own whole-frame pass every analysed
        # frame; a camera on YuNet alone must look again around every face it tracks.
        self._multi = isinstance(models.detector, MultiScaleDetector)
        self.capped = 0  # frames not analysed because of detect_fps (also counted in skipped)
        self._last_full_scan = float("-inf")
        self._bodies_at_scan: dict[int, np.ndarray] = {}  # track id → its body box at that scan
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

    def process(self, image: np.ndarray, ts: float, paced: bool = False) -> Analysis:
        """One frame at ``ts`` (seconds, monotonic). ``paced``: the caller has applied
        detect_fps already (the daemon's reader, whose queue may drop a frame it handed over),
        so every frame given is due; others (bench, tests, a harness) give every frame."""
        if not paced and not self.cadence.due(ts):
            # Above detect_fps: the daemon's reader never hands such a frame over, so nothing
            # happens here either (no ageing, no observation); its faces are the tracked ones.
            self.capped += 1
            self.skipped += 1
            return Analysis([], False, _boxes([t.box for t in self.tracker.tracks]))
        image = as_bgr(image)
        if not self.zones.empty:
            h, w = image.shape[:2]
            self.zones.frame_size(w, h)
            if self.gate is not None:
                self.gate.ignore = self.zones.motion_ignore((w, h), THUMB)
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
        detector = self.models.detector
        if self._multi:
            # Near faces first: a person BlazeFace finds in this very frame explains the motion
            # around them (someone who just walked in), so YuNet need not look there.
            near = detector.near.detect(image)
            # A face inside a mask (a television, a poster) explains nothing around it.
            bodies = [_body(d.box) for d in near if self.zones.empty or not self.zones.masked(d.box)]
            regions = self._regions(image, ts, bodies)
            dets = detector.detect(image, regions, near)
        else:
            regions = self._regions(image, ts) if detector.uses_regions else None
            dets = detector.detect(image, regions)
        t1 = time.perf_counter()
        if not self.zones.empty:
            kept = [d for d in dets if not self.zones.masked(d.box)]
            self.masked += len(dets) - len(kept)
            dets = kept
        matched, ended = self.tracker.match(ts, dets)
        if detector.uses_regions and regions is None:  # a whole-frame scan: who it saw, where
            self._bodies_at_scan = {t.id: _body(t.box) for t in self.tracker.tracks if not t.small}
        if not self.zones.empty:
            for t, _ in matched:
                t.zones = self.zones.zones_of(t.box)
        least = self.models.classifier.min_face_px
        readable = [(t, i) for t, i in matched if dets[i].size >= least]
        probs = self.models.classifier.classify(image, [dets[i].box for _, i in readable])
        t2 = time.perf_counter()
        obs = [Observation(t, probs[k], dets[i].score, dets[i].size) for k, (t, i) in enumerate(readable)]
        obs += [
            Observation(t, None, dets[i].score, dets[i].size) for t, i in matched if (t, i) not in readable
        ]
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
            (t2 - t1) * 1000 / len(readable) if readable else None,
            dets,
        )

    def _regions(
        self, image: np.ndarray, ts: float, found: list[np.ndarray] | None = None
    ) -> list[np.ndarray] | None:
        """Where a region-capable detector should look now: None for the whole frame (at the
        slow full-scan cadence), else around tracked faces and where the picture moved.
        ``found``: body boxes of near faces already found in this frame."""
        near = [_body(t.box) for t in self.tracker.tracks if self._multi and not t.small] + (found or [])
        since = ts - self._last_full_scan
        if since >= self.full_frame_every_s or since < 0:
            # Nothing but tracked near people changed since the last whole-frame scan: this one
            # would read the same picture and find what that one found, so it waits, up to
            # SCAN_STRETCH times the cadence (sensor noise, change below the gate's threshold).
            # Where those people were at that scan counts as theirs too (the background they
            # uncovered hides no new face).
            stretched = 0 <= since < SCAN_STRETCH * self.full_frame_every_s
            # Only for people still here: where someone who left stood is looked at again.
            ids = {t.id for t in self.tracker.tracks}
            explained = near + [b for tid, b in self._bodies_at_scan.items() if tid in ids]
            unchanged = self.gate is not None and not self.gate.changed_since_scan(image, explained)
            if not (stretched and unchanged):
                self._last_full_scan = ts
                if self.gate is not None:
                    self.gate.scanned(image)
                return None
        # Faces only the small-face detector sees are looked for again around where they were;
        # BlazeFace refinds the others on its own whole-frame pass.
        regions = [_grow(t.box, TRACKED_CONTEXT) for t in self.tracker.tracks if t.small or not self._multi]
        if self.gate is not None:
            # Motion that a near face explains (its head and shoulders moving) needs no look;
            # what moved beyond its surroundings does (measured on bench's moving clip: a region
            # merely overlapping a near face sent YuNet over it nearly every frame).
            regions += self.gate.moving_regions(image, near)
        return regions

    def idle(self, ts: float) -> list[dict]:
        """No frame came (camera offline or stalled): faces age out on the clock, so nobody
        stays "in view" of a camera that cannot see."""
        # hold, not match: no frame is no evidence that a face left, so a face seen once is
        # not dropped (at detect_fps under 2 frames come further apart than this is called).
        ended = self.tracker.hold(ts, [])
        return self.aggregator.observe(ts, [], ended)

    def end(self, ts: float) -> list[dict]:
        """The stream has ended: every visit ends now."""
        return self.aggregator.observe(ts, [], self.tracker.end_all())

    def state(self, ts: float) -> dict:
        return self.aggregator.state(ts)

    def state_changed(self) -> bool:
        return self.aggregator.state_changed()

    def faces_now(self) -> list[dict]:
        """The confirmed faces in view with their boxes and announced emotions (the live view)."""
        labels = self.aggregator.face_labels()
        out = []
        for t in self.tracker.tracks:
            if not t.confirmed:
                continue
            emotion, confidence = labels.get(t.id, (None, 0.0))
            box = [round(float(v)) for v in t.box]
            out.append({"track_id": t.id, "box": box, "emotion": emotion, "confidence": confidence})
        return out


def _camera_cfg(cfg: Config, camera: str):  # type: ignore[no-untyped-def]
    return next((c for c in cfg.cameras if c.name == camera), cfg.cameras[0])


def _body(box: np.ndarray) -> np.ndarray:
    """Where a face's person moves with it: head, shoulders and arms, two face widths either
    side of its centre, from a face height above it (hair) to four below. Motion there is that
    person. Kept tight (it was 7 high): a far face that appears inside it waits for a whole-frame
    scan, which waits for it only SCAN_STRETCH times the cadence."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    return np.array([x + w / 2 - 2 * side, y - side, 4 * side, 5 * side], dtype=np.float32)


def _grow(box: np.ndarray, factor: float) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * factor
    return np.array([x + w / 2 - side / 2, y + h / 2 - side / 2, side, side], dtype=np.float32)


def _boxes(boxes: list[np.ndarray]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)
