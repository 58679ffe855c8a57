"""Small faces: YuNet through the backend interface, the default auto detector, fetching YuNet,
and the analyzer looking at regions between whole-frame scans."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.analyzer import FaceModels, FrameAnalyzer
from edgeemo.config import Config, DetectorConfig
from edgeemo.detectors import iou_matrix
from edgeemo.detectors.yunet import merge_regions
from edgeemo.errors import ModelError
from edgeemo.modelstore import catalog, fetch
from edgeemo.tools.devtools import astronaut_bgr, empty_room
from tests.conftest import shared_path

FACE = (slice(20, 260), slice(150, 390))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _yunet_installed(request: pytest.FixtureRequest) -> None:
    """YuNet comes from its official home or the team's copy in ../shared; a machine with
    neither (no internet, no ../shared) cannot have it."""
    if "models_dir" in request.fixturenames:
        models_dir = request.getfixturevalue("models_dir")
        if not (models_dir / catalog()["yunet"].file).is_file():
            pytest.skip(
                "YuNet is not installed: no internet and no ../shared/models/yunet copy here"
            )  # the astronaut's head in skimage's picture


def _scene(face_px: int, at: tuple[int, int] = (900, 400), size: tuple[int, int] = (1920, 1080)) -> tuple:
    """A 1080p room with the astronaut's head pasted so her face is about ``face_px`` wide."""
    frame = empty_room(*size)
    head = cv2.resize(astronaut_bgr()[FACE], (face_px * 2, face_px * 2), interpolation=cv2.INTER_AREA)
    x, y = at
    frame[y : y + head.shape[0], x : x + head.shape[1]] = head
    return frame, np.array([[x, y, head.shape[1], head.shape[0]]], np.float32)


def _found(dets: list, region: np.ndarray) -> bool:
    """A detection whose centre lies in the pasted head."""
    for d in dets:
        box = d.box if hasattr(d, "box") else np.array(d["box"], np.float32)
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        x, y, w, h = region[0]
        if x <= cx <= x + w and y <= cy <= y + h:
            return True
    return False


def test_yunet_decoder_agrees_with_opencvs_face_detector_yn(models_dir: Path) -> None:
    frame, _ = _scene(40)
    ours = FaceModels.from_settings(models_dir, DetectorConfig(model="yunet", score_threshold=0.6)).detector
    ref = cv2.FaceDetectorYN.create(str(models_dir / catalog()["yunet"].file), "", (1920, 1080), 0.6, 0.3)
    _, faces = ref.detect(frame)
    assert faces is not None and len(faces) >= 1
    mine = np.array([d.box for d in ours.detect(frame)], np.float32)
    assert len(mine) == len(faces)
    assert iou_matrix(faces[:, :4].astype(np.float32), mine).max(axis=1).min() > 0.95


@pytest.mark.parametrize("face_px", [32, 56, 100])
def test_auto_finds_faces_blazeface_cannot_see_in_1080p(models_dir: Path, face_px: int) -> None:
    frame, head = _scene(face_px)
    short = FaceModels.from_settings(models_dir, DetectorConfig(model="short_range"))
    auto = FaceModels.from_settings(models_dir)  # the defaults: detector.model auto
    assert not _found(short.detector.detect(frame), head)
    faces = auto.analyse_image(frame)
    assert _found(faces, head), faces
    assert len(faces) == 1  # nothing else in the room is taken for a face


def test_auto_still_finds_a_frame_filling_face_once(models_dir: Path) -> None:
    face = cv2.resize(astronaut_bgr()[FACE], (480, 480))
    dets = FaceModels.from_settings(models_dir).detector.detect(face)
    assert len(dets) == 1 and dets[0].size > 150


@pytest.mark.shared
def test_auto_takes_no_dog_for_a_face(models_dir: Path) -> None:
    dogs = cv2.imread(str(shared_path("data", "dlib_faces", "images", "dogs.jpg")))
    big = cv2.resize(dogs, (1920, 1080))
    yunet = FaceModels.from_settings(models_dir, DetectorConfig(model="yunet", score_threshold=0.5))
    assert yunet.detector.detect(big)  # YuNet alone sees faces in the dogs...
    assert FaceModels.from_settings(models_dir).detector.detect(big) == []  # ...the confirmed auto does not


def test_regions_are_clipped_and_merged() -> None:
    boxes = [[-10, -10, 50, 50], [30, 30, 40, 40], [500, 300, 10, 10], [700, 100, 50, 50]]
    r = merge_regions([np.array(b, np.float32) for b in boxes], 640, 480)
    # The overlapping pair becomes one box clipped to the frame, the tiny one grows to 32 px,
    # and the one outside the frame is dropped.
    assert r == [(0, 0, 70, 70), (489, 289, 521, 321)]


def _counting_scans(analyzer: FrameAnalyzer) -> tuple[list, list]:
    """Record the sizes YuNet is run on: whole frames and region crops."""
    small = analyzer.models.detector.small
    whole, crops = [], []
    raw = small._raw

    def counting(image: np.ndarray):  # type: ignore[no-untyped-def]
        (whole if image.shape[1] >= 1920 else crops).append(image.shape)
        return raw(image)

    small._raw = counting
    return whole, crops


def test_the_analyzer_tracks_a_small_face_with_region_scans(models_dir: Path) -> None:
    """A far face walks across a 1080p room: found on the first (whole-frame) scan, then refound
    in its neighbourhood on the frames between scans; YuNet never reads a whole frame twice.
    It is in view but too small to read: counted, no event."""
    cfg = Config.model_validate({"cameras": [{"name": "hall", "source": "x"}]})
    analyzer = FrameAnalyzer.for_camera(cfg, "hall", models_dir)
    whole, crops = _counting_scans(analyzer)
    events = []
    for i in range(25):  # 5 s at 5 fps, the face moving 12 px a frame
        frame, _ = _scene(32, at=(600 + 12 * i, 500))
        events += analyzer.process(frame, 1000.0 + i / 5).events
    assert len(whole) == 1 and len(crops) >= 10
    assert len(analyzer.tracker.tracks) == 1 and analyzer.tracker.tracks[0].small
    state = analyzer.state(1005.0)
    assert events == [] and state["faces"] == 1 and state["unreadable_faces"] == 1


def test_an_approaching_person_enters_once_when_the_face_is_readable(models_dir: Path) -> None:
    cfg = Config.model_validate({"cameras": [{"name": "hall", "source": "x"}]})
    analyzer = FrameAnalyzer.for_camera(cfg, "hall", models_dir)
    events, first_readable = [], None
    for i in range(30):  # 6 s at 5 fps: the face grows from 16 to 74 px wide as she comes closer
        px = 16 + 2 * i
        frame, _ = _scene(px, at=(900 - px, 500 - px))
        new = analyzer.process(frame, 1000.0 + i / 5).events
        if analyzer.state(0)["faces"] - analyzer.state(0)["unreadable_faces"] and first_readable is None:
            first_readable = i
        events += new
    assert [e["event_type"] for e in events] == ["face_entered"]  # one visit, not one per size
    assert first_readable is not None and events[0]["track_id"] == analyzer.tracker.tracks[0].id


def test_yunet_is_fetched_from_a_local_copy_with_its_checksum(tmp_path: Path) -> None:
    copy = shared_path("models", "yunet")
    out = tmp_path / "models"
    report = fetch(out, ["yunet"], local_dirs=[copy])
    target = out / catalog()["yunet"].file
    assert target.is_file() and "sha256 ok" in report[0]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == catalog()["yunet"].sha256
    assert target.stat().st_mode & 0o777 == 0o644
    # A damaged copy is refused and nothing is installed.
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(copy / target.name, bad / target.name)
    with (bad / target.name).open("r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    target.unlink()
    with pytest.raises(ModelError, match="sha256 mismatch"):
        fetch(out, ["yunet"], local_dirs=[bad])
    assert not target.exists() and not list(out.glob("*.part"))


@pytest.mark.shared
def test_small_faces_with_their_surroundings_are_found_at_28_px(models_dir: Path, tmp_path: Path) -> None:
    """scripts/small_faces.py's held-out frames at 28 px (36 colour faces from dlib_faces and
    Coral's photos, over scikit-image backgrounds), as `edgeemo detect` reads them. Before the
    candidates from YuNet score 0.15 and the 3x confirming crop: 33 of 36."""
    shared_path("data", "dlib_faces")
    spec = importlib.util.spec_from_file_location("small_faces", ROOT / "scripts" / "small_faces.py")
    assert spec and spec.loader
    small_faces = importlib.util.module_from_spec(spec)
    sys.modules["small_faces"] = small_faces  # its dataclass looks itself up there
    spec.loader.exec_module(small_faces)
    # The script's own frames (placements depend on the widths before), its 28 px ones analysed.
    items = [i for i in small_faces.build_heldout(tmp_path, (1920, 1080)) if i.width == 28]
    auto = FaceModels.from_settings(models_dir)
    report = small_faces.score(items, [{"faces": auto.analyse_image(cv2.imread(str(i.path)))} for i in items])
    assert report["recall_by_width"][28] >= 0.95, report
    assert report["false_faces_per_frame"] <= 0.2, report


class _Candidates:
    """A stand-in small-face detector: the candidates given, wherever it is asked."""

    uses_regions = True

    def __init__(self, *dets) -> None:
        self.dets = dets

    def detect(self, frame, regions=None) -> list:
        return list(self.dets)


def test_only_an_unsure_small_candidate_needs_blazefaces_confirmation(models_dir: Path) -> None:
    from edgeemo.detectors import Detection
    from edgeemo.detectors.multiscale import SURE, MultiScaleDetector

    cfg = DetectorConfig(model="short_range")
    near = FaceModels.from_settings(models_dir, cfg).detector
    room = empty_room(1920, 1080)  # no face anywhere: BlazeFace confirms nothing here
    box = np.array([900, 400, 30, 36], np.float32)
    sure = MultiScaleDetector(near, _Candidates(Detection(box, SURE + 0.01)), cfg)  # type: ignore[arg-type]
    unsure = MultiScaleDetector(near, _Candidates(Detection(box, SURE - 0.2)), cfg)  # type: ignore[arg-type]
    assert [d.small for d in sure.detect(room)] == [True]
    assert unsure.detect(room) == []


def test_detect_cli_rejects_a_tile_too_small_for_the_overlap(tmp_path: Path) -> None:
    import subprocess

    img = tmp_path / "room.jpg"
    cv2.imwrite(str(img), empty_room(640, 480))
    cmd = [sys.executable, "-m", "edgeemo", "detect", "--tile-px", "100", str(img)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "--tile-px" in r.stderr and "at least 256" in r.stderr


def _whole_frame_scans(analyzer: FrameAnalyzer, size: tuple[int, int]) -> list[float]:
    """The times at which YuNet reads the whole frame (not a region of it)."""
    small = analyzer.models.detector.small
    scans: list[float] = []
    raw = small._raw

    def counting(image: np.ndarray):  # type: ignore[no-untyped-def]
        if image.shape[1::-1] == size:
            scans.append(analyzer.now)
        return raw(image)

    small._raw = counting
    return scans


@pytest.mark.parametrize("light_at", [None, 12.0])
def test_a_whole_frame_scan_waits_while_only_tracked_people_move(
    models_dir: Path, light_at: float | None
) -> None:
    """Someone near the camera sways for 40 s: what changes is that person, and a second
    whole-frame scan would read what the first read, so it waits, up to 15 s (3x the 5 s
    cadence). A change elsewhere (the lights, at 12 s) brings the scan back at once."""
    cfg = Config.model_validate({"cameras": [{"name": "hall", "source": "x"}]})
    analyzer = FrameAnalyzer.for_camera(cfg, "hall", models_dir)
    scans = _whole_frame_scans(analyzer, (640, 480))
    for i in range(200):  # 40 s at 5 fps
        t = i / 5
        frame, _ = _scene(150, at=(200 + round(8 * np.sin(i)), 120 + round(6 * np.cos(i))), size=(640, 480))
        if light_at is not None and t >= light_at:
            frame = cv2.convertScaleAbs(frame, alpha=1.0, beta=40)
        analyzer.now = t
        analyzer.process(frame, t)
        if i == 1:
            assert len(analyzer.tracker.tracks) == 1 and not analyzer.tracker.tracks[0].small
    # (+0.2 s: a face this still is analysed every other frame, steady_every 2)
    if light_at is None:  # at 0, 15 and 30 s
        assert len(scans) == 3 and scans[0] == 0.0
        assert 15.0 <= scans[1] <= 15.2 and 30.0 <= scans[2] <= 30.4
    else:  # at 0 and 12 s, then the lights stay up: 27 s
        assert len(scans) == 3 and scans[0] == 0.0
        assert 12.0 <= scans[1] <= 12.2 and 27.0 <= scans[2] <= 27.4


def test_a_camera_on_yunet_alone_keeps_a_face_that_barely_moves(models_dir: Path) -> None:
    """With `detector.model: yunet` there is no BlazeFace pass to refind a face between
    whole-frame scans: YuNet looks again around every tracked face, whatever its size, so a
    face that only sways a little (its motion all inside its own surroundings) stays one visit."""
    cfg = Config.model_validate(
        {"cameras": [{"name": "hall", "source": "x"}], "detector": {"model": "yunet"}}
    )
    analyzer = FrameAnalyzer.for_camera(cfg, "hall", models_dir)
    events = []
    for i in range(40):  # 8 s at 5 fps: past the 2 s a face unseen is kept, and a 5 s scan
        frame, _ = _scene(120, at=(200 + (i % 2) * 4, 100), size=(640, 480))
        events += analyzer.process(frame, 1000.0 + i / 5).events
    assert [e["event_type"] for e in events] == ["face_entered"]
    assert len(analyzer.tracker.tracks) == 1


def test_a_face_on_a_masked_tv_does_not_hide_a_real_one_beside_it(models_dir: Path) -> None:
    """A mask over a television that shows a large face: that face is dropped, and it must not
    count as a person whose motion explains the picture around it either, or a far person who
    walks up beside the TV waits for the next whole-frame scan."""
    tv = [[300, 150], [900, 150], [900, 750], [300, 750]]
    cfg = Config.model_validate({"cameras": [{"name": "hall", "source": "x", "masks": [tv]}]})
    analyzer = FrameAnalyzer.for_camera(cfg, "hall", models_dir)
    rng = np.random.default_rng(0)
    head = cv2.resize(astronaut_bgr()[FACE], (600, 600), interpolation=cv2.INTER_AREA)
    first = None
    for i in range(45):  # 9 s at 5 fps; the far person comes at 6 s
        frame = empty_room(1920, 1080)
        frame[150:750, 300:900] = rng.integers(0, 64, (600, 600, 3), dtype=np.uint8)  # the film
        frame[150:750, 300 + (i % 3) * 4 : 900 + (i % 3) * 4] = head  # its actor, a big face
        if i >= 30:
            small = cv2.resize(astronaut_bgr()[FACE], (80, 80), interpolation=cv2.INTER_AREA)
            frame[400:480, 940 + (i % 2) * 2 : 1020 + (i % 2) * 2] = small
        analyzer.process(frame, 1000.0 + i / 5)
        if first is None and any(t.box[0] > 920 for t in analyzer.tracker.tracks):
            first = i / 5
    assert analyzer.masked > 0  # the TV's face was found, and dropped
    assert first is not None and first <= 6.4
