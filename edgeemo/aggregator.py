"""From noisy per-frame probabilities to few, meaningful events and a per-camera state.

Per track: an exponential moving average of the class probabilities, each frame weighted by
detection score and face size (small or uncertain faces move it less). A face's emotion
changes only after a new leader has held a margin over the current one for ``dwell_s``.
Per camera: faces in view, the dominant emotion, and the distribution over a time window.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edgeemo.config import AggregatorConfig
from edgeemo.tracker import Track

NO_FACE = "none"


@dataclass
class _Mood:
    ema: np.ndarray
    last_ts: float
    life: np.ndarray  # weighted sum over the track's life, for the face_left summary
    emotion: str | None = None  # announced emotion; None until face_entered
    since: float = 0.0
    candidate: str | None = None
    candidate_since: float = 0.0


@dataclass
class Observation:
    track: Track
    probs: np.ndarray | None  # None: the face is too small to read (counted, no emotion)
    score: float
    size: float


@dataclass
class CameraAggregator:
    camera: str
    labels: list[str]
    cfg: AggregatorConfig
    _moods: dict[int, _Mood] = field(default_factory=dict)
    # Confirmed faces too small to read, never yet read: in view, but no event until readable.
    _unreadable: dict[int, float] = field(default_factory=dict)
    _zones: dict[int, tuple[str, ...]] = field(default_factory=dict)  # track id → its zones
    _window: deque = field(default_factory=deque)
    _last_key: tuple | None = None
    _faces: int = 0
    _dominant: str = NO_FACE
    _now: np.ndarray | None = None  # mean scores of the faces in view now

    def _weight(self, score: float, size: float) -> float:
        return float(np.clip(score, 0.0, 1.0) * np.clip(size / self.cfg.ref_face_px, 0.25, 1.0))

    def _event(self, kind: str, ts: float, t: Track, mood: _Mood, **extra: object) -> dict:
        idx = self.labels.index(mood.emotion) if mood.emotion else int(np.argmax(mood.ema))
        return {
            "event_type": kind,
            "type": kind,
            "id": uuid.uuid4().hex,
            "camera": self.camera,
            "track_id": t.id,
            "emotion": self.labels[idx],
            "confidence": round(float(mood.ema[idx]), 3),
            "scores": {label: round(float(p), 3) for label, p in zip(self.labels, mood.ema, strict=True)},
            "duration": round(ts - t.first_seen, 2),
            "box": [round(float(v)) for v in t.box],
            "zones": list(t.zones),
            "ts": round(ts, 3),
            **extra,
        }

    def observe(self, ts: float, seen: list[Observation], ended: list[Track]) -> list[dict]:
        """One frame's observations and the tracks that ended with it → the events it causes."""
        events: list[dict] = []
        for ob in seen:
            self._zones[ob.track.id] = ob.track.zones
            if ob.probs is None:
                if ob.track.id not in self._moods and ob.track.confirmed:
                    self._unreadable[ob.track.id] = ts
                continue  # an announced face that shrinks keeps its emotion until readable again
            self._unreadable.pop(ob.track.id, None)
            w = self._weight(ob.score, ob.size)
            mood = self._moods.get(ob.track.id)
            if mood is None:
                mood = self._moods[ob.track.id] = _Mood(ob.probs.copy(), ts, ob.probs * w)
            else:
                alpha = 1.0 - 0.5 ** (max(ts - mood.last_ts, 1e-3) * w / self.cfg.halflife_s)
                mood.ema += alpha * (ob.probs - mood.ema)
                mood.last_ts = ts
                mood.life += ob.probs * w
            if not ob.track.confirmed:
                continue
            leader = self.labels[int(np.argmax(mood.ema))]
            if mood.emotion is None:
                mood.emotion, mood.since = leader, ts
                events.append(self._event("face_entered", ts, ob.track, mood))
            elif (
                leader == mood.emotion
                or mood.ema[self.labels.index(leader)] - mood.ema[self.labels.index(mood.emotion)]
                < self.cfg.margin
            ):
                mood.candidate = None
            elif mood.candidate != leader:
                mood.candidate, mood.candidate_since = leader, ts
            elif ts - mood.candidate_since >= self.cfg.dwell_s:
                previous, held = mood.emotion, ts - mood.since
                mood.emotion, mood.since, mood.candidate = leader, ts, None
                events.append(
                    self._event(
                        "emotion_changed",
                        ts,
                        ob.track,
                        mood,
                        previous_emotion=previous,
                        previous_duration=round(held, 2),
                    )
                )
        for t in ended:
            self._unreadable.pop(t.id, None)
            self._zones.pop(t.id, None)
            mood = self._moods.pop(t.id, None)
            if mood is None or mood.emotion is None:
                continue  # never announced: a flicker, not a visitor
            life = mood.life / max(float(mood.life.sum()), 1e-9)
            ev = self._event("face_left", t.last_seen, t, mood)
            ev["dominant_emotion"] = self.labels[int(np.argmax(life))]
            events.append(ev)
        self._observe_window(ts, seen)
        return events

    def _observe_window(self, ts: float, seen: list[Observation]) -> None:
        # Faces in view = announced faces whose track is alive: a one-frame miss is no change.
        moods = [m for m in self._moods.values() if m.emotion is not None]
        if any(o.track.confirmed for o in seen) and moods:
            self._window.append((ts, np.mean([m.ema for m in moods], axis=0)))
        while self._window and ts - self._window[0][0] > self.cfg.window_s:
            self._window.popleft()
        # Faces in view: announced ones and confirmed ones too small to read (no emotion).
        self._faces = len(moods) + len(self._unreadable)
        # The faces in view now: their mean scores are the dominant emotion's own attributes.
        self._now = np.mean([m.ema for m in moods], axis=0) if moods else None
        self._dominant = self.labels[int(np.argmax(self._now))] if self._now is not None else NO_FACE

    def _window_dist(self) -> np.ndarray | None:
        return np.mean([d for _, d in self._window], axis=0) if self._window else None

    def state(self, ts: float) -> dict:
        """Two meanings, each named: ``dominant_emotion`` and ``emotions`` are the faces in view
        now; ``window_dominant_emotion`` and ``distribution`` the last ``window_s`` seconds."""
        zeros = np.zeros(len(self.labels))
        now = self._now if self._now is not None else zeros
        window = self._window_dist()

        def scores(p: np.ndarray) -> dict[str, float]:
            return {label: round(float(v), 3) for label, v in zip(self.labels, p, strict=True)}

        return {
            "camera": self.camera,
            "faces": self._faces,
            "unreadable_faces": len(self._unreadable),  # in view, too small to read
            "zones": self._zone_counts(),
            "dominant_emotion": self._dominant,
            "emotions": scores(now),
            "window_dominant_emotion": self._window_dominant(),
            "distribution": scores(window if window is not None else zeros),
            "window_s": self.cfg.window_s,
            "ts": round(ts, 3),
        }

    def _zone_counts(self) -> dict[str, int]:
        """Faces in view per zone (announced or too small to read), zones with none left out."""
        counts: dict[str, int] = {}
        in_view = {tid for tid, m in self._moods.items() if m.emotion is not None} | set(self._unreadable)
        for tid in in_view:
            for zone in self._zones.get(tid, ()):
                counts[zone] = counts.get(zone, 0) + 1
        return dict(sorted(counts.items()))

    def _window_dominant(self) -> str:
        window = self._window_dist()
        return self.labels[int(np.argmax(window))] if window is not None else NO_FACE

    def face_labels(self) -> dict[int, tuple[str | None, float]]:
        """Each face's announced emotion and its smoothed confidence (None until announced)."""
        out: dict[int, tuple[str | None, float]] = {}
        for tid, m in self._moods.items():
            idx = self.labels.index(m.emotion) if m.emotion else int(np.argmax(m.ema))
            out[tid] = (m.emotion, round(float(m.ema[idx]), 3))
        return out

    def state_changed(self) -> bool:
        """True once each time faces-in-view, the dominant emotion or the window's changes."""
        key = (self._faces, self._dominant, self._window_dominant())
        changed, self._last_key = key != self._last_key, key
        return changed
