"""backend: onnx (ONNX Runtime) on this machine's CPU provider, against the TFLite backend.

No GPU here: the TensorRT and CUDA providers are absent, which is exactly what the provider
selection and the ``fallback:`` rule are tested with.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.analyzer import FaceModels, FrameAnalyzer
from edgeemo.backends import AcceleratorUnavailable, ModelError, load_model, onnxrt
from edgeemo.config import Config, DetectorConfig, InferenceConfig, parse_config
from edgeemo.detectors import iou_matrix
from edgeemo.errors import ConfigError
from edgeemo.modelstore import catalog, open_model, resolve, sha256_of
from edgeemo.tools.devtools import astronaut_bgr, demo_frames, empty_room
from tests.conftest import run_cli, shared_path

pytest.importorskip(
    "onnxruntime",
    reason="ONNX Runtime is not installed (pip install 'edgeemo[onnx]'; `make test` installs it)",
)

CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]  # PyPI's onnxruntime, as here
ONNX_CPU = InferenceConfig(backend="onnx", providers=["cpu"])


@pytest.fixture
def yunet(models_dir: Path) -> Path:
    path = models_dir / catalog()["yunet"].file
    if not path.is_file():
        pytest.skip("YuNet is not installed: no internet and no ../shared/models/yunet copy here")
    return path


# --- provider selection and fallback ---------------------------------------------------------


def test_default_order_takes_the_best_present() -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnxrt.choose_providers(None, gpu, "none") == (["tensorrt", "cuda", "cpu"], [])
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnxrt.choose_providers(None, cuda, "none") == (["cuda", "cpu"], ["tensorrt"])
    assert onnxrt.choose_providers(["cuda", "tensorrt"], gpu, "none") == (["cuda", "tensorrt"], [])
    # The CPU asked for explicitly is no fallback: no warning, fine with fallback none.
    assert onnxrt.choose_providers(["cpu"], CPU_ONLY, "none") == (["cpu"], [])


def test_missing_gpu_provider_falls_back_to_cpu_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        chosen, missing = onnxrt.choose_providers(["tensorrt", "cuda"], CPU_ONLY, "cpu")
    assert chosen == ["cpu"] and missing == ["tensorrt", "cuda"]
    warned = [r.message for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "no TensorrtExecutionProvider and CUDAExecutionProvider" in warned[0]
    assert "running on its CPU provider" in warned[0]


def test_missing_gpu_provider_with_fallback_none_stops_with_one_line() -> None:
    with pytest.raises(AcceleratorUnavailable) as e:
        onnxrt.choose_providers(None, CPU_ONLY, "none")
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 1
    assert "CUDAExecutionProvider" in msg and "NVIDIA's wheel" in msg and "fallback is none" in msg


def test_open_model_follows_the_fallback_rule(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """This machine's ONNX Runtime has no GPU provider: asking for CUDA runs on the CPU provider
    with a warning (fallback cpu) or stops naming what is missing (fallback none)."""
    rm = resolve("edgeemo_fer_int8", models_dir, "emotion")
    with caplog.at_level(logging.INFO):
        model = open_model(rm, InferenceConfig(backend="onnx", providers=["cuda"]), "emotion model")
    assert model.backend == "onnx" and model.path == rm.files["onnx"]
    assert model.describe() == "onnx (CPUExecutionProvider)"
    assert any(r.levelname == "WARNING" and "CUDAExecutionProvider" in r.message for r in caplog.records)
    assert any("runs on onnx (CPUExecutionProvider)" in r.message for r in caplog.records)
    with pytest.raises(AcceleratorUnavailable, match=r"^emotion model: ONNX Runtime here has no CUDA"):
        open_model(rm, InferenceConfig(backend="onnx", providers=["cuda"], fallback="none"), "emotion model")


def test_cli_with_fallback_none_says_one_clear_line(
    models_dir: Path, yunet: Path, astronaut_png: Path
) -> None:
    # YuNet, not the default auto: BlazeFace has no ONNX twin, which is another refusal.
    r = run_cli(
        "detect", str(astronaut_png), "--backend", "onnx", "--fallback", "none",
        "--detector", "yunet", "--models-dir", str(models_dir),
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no TensorrtExecutionProvider and CUDAExecutionProvider" in lines[0], lines


def test_model_without_an_onnx_twin(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """BlazeFace is TFLite only: under the onnx backend it runs on the TFLite CPU runtime with a
    warning, or stops with fallback none (which promises nothing runs on the CPU unasked)."""
    rm = resolve("short_range", models_dir, "face_detection")
    assert "onnx" not in rm.files
    model = open_model(rm, ONNX_CPU, "detector")
    assert model.backend == "cpu" and model.path == rm.cpu_file
    assert any(r.levelname == "WARNING" and "no onnx model file" in r.message for r in caplog.records)
    with pytest.raises(AcceleratorUnavailable, match=r"no onnx model file.*use detector yunet"):
        open_model(rm, InferenceConfig(backend="onnx", providers=["cpu"], fallback="none"), "detector")


def test_tensorrt_engines_are_cached_in_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:{tmp_path}/other")
    assert onnxrt.default_cache_dir() == tmp_path / "state" / "onnx-trt-cache"
    opts = onnxrt.provider_options("tensorrt", tmp_path / "c", native=False)
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "c")
    assert opts["trt_timing_cache_path"] == str(tmp_path / "c")
    native = onnxrt.provider_options("tensorrt", tmp_path / "c", native=True)
    assert native["trt_profile_max_shapes"] == "input:1x3x1088x1920"  # one engine for 1080p and less
    assert onnxrt.provider_options("cuda", tmp_path, native=True) == {}
    cfg = Config(cameras=[{"name": "a", "source": "x.mp4"}], state_dir=tmp_path / "s")
    assert cfg.inference.engine_cache_dir == tmp_path / "s" / "onnx-trt-cache"
    assert onnxrt.options(cfg.inference)["cache_dir"] == tmp_path / "s" / "onnx-trt-cache"


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        ("[gpu]", "inference.providers[0]: Input should be 'tensorrt', 'cuda' or 'cpu'"),
        ("[cuda, cuda]", "inference.providers: lists a provider twice"),
        ("[]", "inference.providers: List should have at least 1 item"),
    ],
)
def test_config_rejects_unknown_providers(providers: str, expected: str) -> None:
    data = {"cameras": [{"name": "a", "source": "x"}], "inference": {"backend": "onnx"}}
    import yaml

    data["inference"]["providers"] = yaml.safe_load(providers)
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert expected in str(e.value)


def test_config_names_match_onnx_runtime() -> None:
    import onnxruntime

    assert set(onnxrt.PROVIDERS.values()) <= set(onnxruntime.get_all_providers())


# --- the same answers as TFLite ----------------------------------------------------------------


def test_emotion_model_has_a_verified_onnx_twin(models_dir: Path) -> None:
    m = catalog()["edgeemo_fer_int8"]
    rm = resolve(m.name, models_dir, "emotion")
    assert rm.files["onnx"] == models_dir / "edgeemo_fer_int8.onnx" == models_dir / str(m.onnx_file)
    assert sha256_of(rm.files["onnx"]) == m.onnx_sha256


def test_emotion_probabilities_match_tflite_within_int8_tolerance(models_dir: Path) -> None:
    """Both files are int8, quantised by different tools from the same float network. Measured
    on these 300 public-test faces: ONNX int8 vs float ONNX differ by 0.003 on average (95% of
    faces ≤ 0.025 at most, top-1 the same for all); the TFLite int8 file vs float by 0.018
    (≤ 0.24); the two int8 files from each other by 0.018 (≤ 0.24), top-1 the same for 99%.
    TFLite's own int8 error is the tolerance."""
    with np.load(shared_path("data", "fer2013", "publictest.npz")) as d:
        faces = d["images"][:300].astype(np.float32)[..., None] / 255.0
    rm = resolve("edgeemo_fer_int8", models_dir, "emotion")
    p_onnx = open_model(rm, ONNX_CPU, "emotion").run(faces)[0]
    p_tflite = open_model(rm, InferenceConfig(), "emotion").run(faces)[0]
    assert p_onnx.shape == p_tflite.shape == (300, 7)
    np.testing.assert_allclose(p_onnx.sum(axis=1), 1.0, atol=1e-3)  # the tail stays float
    diff = np.abs(p_onnx - p_tflite)
    assert diff.mean() < 0.03
    assert np.percentile(diff.max(axis=1), 95) < 0.3
    assert (p_onnx.argmax(1) == p_tflite.argmax(1)).mean() >= 0.97


def test_an_emotion_model_given_in_onnx_alone_runs_on_backend_onnx(models_dir: Path, tmp_path: Path) -> None:
    """Someone's own emotion model, an .onnx file with its manifest beside it and no TFLite file,
    given as ``emotion.model: PATH``: backend onnx opens that file on ONNX Runtime (no separate
    config key is needed; a .tflite model names its ONNX twin with ``onnx_file`` in its manifest
    instead). Here it is our model under another name, so the answers must be identical."""
    from edgeemo.analyzer import resolve_emotion
    from edgeemo.config import EmotionConfig

    built_in = catalog()["edgeemo_fer_int8"]
    mine = tmp_path / "my_emotion.onnx"
    mine.write_bytes((models_dir / str(built_in.onnx_file)).read_bytes())
    manifest = built_in.model_dump(mode="json", exclude_none=True)
    manifest.update(name="my_emotion", file=mine.name, sha256=sha256_of(mine))
    for key in ("onnx_file", "onnx_sha256", "source"):
        manifest.pop(key, None)
    (tmp_path / "my_emotion.json").write_text(json.dumps(manifest))

    rm = resolve_emotion(EmotionConfig(model=str(mine)), models_dir)
    assert rm.files["onnx"] == mine
    model = open_model(rm, ONNX_CPU, "emotion")
    assert model.describe() == "onnx (CPUExecutionProvider)"
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    faces = np.stack([cv2.resize(gray[y : y + 240, 150:390], (48, 48)) for y in (0, 20, 40)])
    faces = faces.astype(np.float32)[..., None] / 255.0
    ours = open_model(resolve("edgeemo_fer_int8", models_dir, "emotion"), ONNX_CPU, "emotion")
    np.testing.assert_array_equal(model.run(faces)[0], ours.run(faces)[0])


def _scene(face_px: int, at: tuple[int, int], size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    frame = empty_room(*size)
    head = cv2.resize(
        astronaut_bgr()[20:260, 150:390], (face_px * 2, face_px * 2), interpolation=cv2.INTER_AREA
    )
    frame[at[1] : at[1] + head.shape[0], at[0] : at[0] + head.shape[1]] = head
    return frame


@pytest.mark.parametrize("frame_name", ["astronaut", "small_face_720p", "two_faces_odd_size"])
def test_yunet_detections_match_opencv_dnn(models_dir: Path, yunet: Path, frame_name: str) -> None:
    """YuNet on ONNX Runtime (at each frame's own size) finds what it finds on OpenCV's DNN."""
    frame = {
        "astronaut": lambda: astronaut_bgr(),
        "small_face_720p": lambda: _scene(40, (600, 300)),
        "two_faces_odd_size": lambda: _scene(70, (300, 100), (1000, 610)),  # not a multiple of 32: padded
    }[frame_name]()
    if frame_name == "two_faces_odd_size":
        frame[400:560, 700:860] = cv2.resize(astronaut_bgr()[20:260, 150:390], (160, 160))
    dcfg = DetectorConfig(model="yunet", score_threshold=0.6)
    ref = FaceModels.from_settings(models_dir, dcfg).detector
    ours = FaceModels.from_settings(models_dir, dcfg, inference=ONNX_CPU).detector
    assert ours.model.describe() == "onnx (CPUExecutionProvider)"
    a = np.array([d.box for d in ref.detect(frame)], np.float32).reshape(-1, 4)
    b = np.array([d.box for d in ours.detect(frame)], np.float32).reshape(-1, 4)
    assert len(a) >= 1 and len(a) == len(b)
    assert iou_matrix(a, b).max(axis=1).min() >= 0.9
    # Regions (around tracked faces, where the picture moved) are other sizes again.
    regions = [np.array([500, 200, 300, 300], np.float32)]
    ra = [d.box for d in ref.detect(frame, regions)]
    rb = [d.box for d in ours.detect(frame, regions)]
    assert len(ra) == len(rb)
    if ra:
        assert iou_matrix(np.array(ra, np.float32), np.array(rb, np.float32)).max(axis=1).min() >= 0.9


def test_onnx_model_given_nchw_input_is_fed_nchw(yunet: Path) -> None:
    model = load_model(yunet, "onnx", providers=["cpu"], native_size=True)
    assert model.input.layout == "NCHW" and model.input_hw == (-1, -1)
    outs = model.run(np.zeros((1, 64, 96, 3), np.float32))
    names = [o.name for o in model.outputs]
    assert outs[names.index("cls_8")].shape == (1, (64 // 8) * (96 // 8), 1)


def test_demo_clip_gives_the_same_events(models_dir: Path, yunet: Path) -> None:
    """The whole chain (auto detector: BlazeFace stays on TFLite, YuNet and the emotion model on
    ONNX Runtime) publishes the same events as the TFLite backend on the demo clip."""
    frames = list(demo_frames(fps=5, seconds=10.0))

    def events(inference: dict) -> list[tuple]:
        cfg = Config(cameras=[{"name": "cam", "source": "x.mp4"}], inference=inference)
        an = FrameAnalyzer.for_camera(cfg, "cam", models_dir)
        out = []
        for i, f in enumerate(frames):
            out += an.process(f, 1000.0 + i / 5).events
        out += an.end(1000.0 + len(frames) / 5)
        return [(e["event_type"], e["ts"], e.get("emotion"), e.get("dominant_emotion")) for e in out]

    tflite = events({})
    onnx = events({"backend": "onnx", "providers": ["cpu"]})
    assert tflite and [e[0] for e in tflite][:1] == ["face_entered"]
    assert onnx == tflite


def test_without_onnx_runtime_the_fallback_rule_applies(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    rm = resolve("edgeemo_fer_int8", models_dir, "emotion")
    model = open_model(rm, ONNX_CPU, "emotion model")
    assert model.backend == "cpu" and model.path == rm.cpu_file
    assert any("ONNX Runtime is not installed" in r.message for r in caplog.records)
    none = InferenceConfig(backend="onnx", fallback="none")
    with pytest.raises(AcceleratorUnavailable, match=r"not installed: pip install 'edgeemo\[onnx\]'"):
        open_model(rm, none, "emotion model")


def test_gpu_provider_that_does_not_start_counts_as_missing(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A GPU build whose CUDA libraries or device are unusable: ONNX Runtime drops the provider
    and runs on the CPU by itself. edgeemo says so, or stops with fallback none."""
    import onnxruntime

    class GPUBuild:
        SessionOptions = onnxruntime.SessionOptions

        @staticmethod
        def get_available_providers() -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        @staticmethod
        def InferenceSession(data: bytes, sess_options: object, providers: list) -> object:
            assert [p for p, _ in providers] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
            return onnxruntime.InferenceSession(data, sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxrt, "ort_module", lambda: GPUBuild)
    rm = resolve("edgeemo_fer_int8", models_dir, "emotion")
    model = open_model(rm, InferenceConfig(backend="onnx"), "emotion model")
    assert model.describe() == "onnx (CPUExecutionProvider)"
    assert any("CUDAExecutionProvider did not start" in r.message for r in caplog.records)
    with pytest.raises(AcceleratorUnavailable, match=r"did not start.*fallback is none"):
        open_model(rm, InferenceConfig(backend="onnx", fallback="none"), "emotion model")


# --- diagnostics: what each model runs on ------------------------------------------------------


class _Publisher:
    progress_at, dropped, delivered = 0.0, 0, 0

    def is_connected(self) -> bool:
        return True

    def outbox_pending(self) -> int:
        return 0

    def outbox_dropped(self) -> int:
        return 0

    def outbox_error(self) -> None:
        return None


def test_stats_and_home_assistant_say_what_the_models_run_on(models_dir: Path, yunet: Path) -> None:
    from types import SimpleNamespace

    from edgeemo.health import CameraHealth, Health
    from edgeemo.mqtt.discovery import discovery_messages
    from edgeemo.mqtt.topics import Topics

    cfg = Config(
        cameras=[{"name": "cam", "source": "x.mp4"}], inference={"backend": "onnx", "providers": ["cpu"]}
    )
    analyzer = FrameAnalyzer.for_camera(cfg, "cam", models_dir)
    health = Health(_Publisher())
    loop = SimpleNamespace(analyzer=analyzer, health=CameraHealth("cam"), is_alive=lambda: True)
    health.watch("cam", SimpleNamespace(online=True, bad_frames=0, dropped=0), loop)
    stats = health.stats()
    assert stats["emotion_runtime"] == "onnx (CPUExecutionProvider)"
    # auto: BlazeFace (no ONNX twin) on the TFLite CPU runtime, YuNet on ONNX Runtime.
    assert stats["cameras"]["cam"]["detector_runtime"] == "cpu + onnx (CPUExecutionProvider)"
    msgs = discovery_messages("homeassistant", Topics("edgeemo/dev1"), "dev1", "Gw", ["cam"], ["happy"])
    sensor = next(p for t, p in msgs if t.endswith("/emotion_runtime/config"))
    assert sensor["value_template"] == "{{ value_json.emotion_runtime }}"
    assert sensor["entity_category"] == "diagnostic"


def test_yunet_without_the_onnx_package_follows_the_fallback_rule(
    models_dir: Path, yunet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    rm = resolve("yunet", models_dir, "face_detection")
    assert open_model(rm, ONNX_CPU, "detector").describe() == "cpu"  # OpenCV's DNN, as before
    none = InferenceConfig(backend="onnx", providers=["cpu"], fallback="none")
    with pytest.raises(AcceleratorUnavailable, match="the onnx package is not installed"):
        open_model(rm, none, "detector")


# --- inference.cpu_onnx: what runs YuNet under backend cpu ---------------------------------------


def test_cpu_onnx_chooses_what_runs_yunet_and_nothing_else(models_dir: Path, yunet: Path) -> None:
    """backend cpu: OpenCV's DNN by default (the daemon's memory), ONNX Runtime when asked for
    or, with auto, when installed; BlazeFace and the emotion model stay on LiteRT either way."""
    assert InferenceConfig().cpu_onnx == "opencv"
    frame = _scene(40, (600, 300))
    found = {}
    for choice, runtime in (
        ("opencv", "cpu"),
        ("auto", "onnx (CPUExecutionProvider)"),
        ("onnxruntime", "onnx (CPUExecutionProvider)"),
    ):
        models = FaceModels.from_settings(
            models_dir, DetectorConfig(), inference=InferenceConfig(cpu_onnx=choice)
        )
        assert models.detector.small.model.describe() == runtime, choice
        assert models.detector.near.model.describe() == "cpu"
        assert models.classifier.model.describe() == "cpu (early exit: 2 networks)"  # LiteRT's
        found[choice] = np.array([d.box for d in models.detector.detect(frame)], np.float32).reshape(-1, 4)
    assert len(found["opencv"]) == 1  # the one 40 px face, found alike on both runtimes
    assert iou_matrix(found["opencv"], found["auto"]).max() >= 0.9


def test_cpu_onnx_auto_without_onnxruntime_runs_opencv_and_by_name_stops(
    models_dir: Path, yunet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    rm = resolve("yunet", models_dir, "face_detection")
    assert open_model(rm, InferenceConfig(cpu_onnx="auto"), "detector").describe() == "cpu"
    with pytest.raises(
        ModelError, match=r"inference\.cpu_onnx is onnxruntime, but ONNX Runtime is not installed"
    ):
        open_model(rm, InferenceConfig(cpu_onnx="onnxruntime"), "detector")


def test_check_config_says_cpu_onnx_onnxruntime_is_not_installed(
    models_dir: Path, yunet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `run` would stop on when it opens YuNet, check-config says first (the role's
    validate: and the unit's ExecStartPre rely on it), before any camera is opened."""
    from edgeemo import preflight

    cfg = Config(cameras=[{"name": "cam", "source": "x.mp4"}], inference={"cpu_onnx": "onnxruntime"})
    preflight.check(cfg, models_dir)  # installed here: fine
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(
        ConfigError, match=r"inference\.cpu_onnx: onnxruntime, but onnxruntime is not installed"
    ):
        preflight.check(cfg, models_dir)
    preflight.check(cfg.model_copy(update={"inference": InferenceConfig(cpu_onnx="auto")}), models_dir)


def test_cpu_onnx_auto_runs_opencv_when_onnx_runtime_cannot_read_the_file(
    models_dir: Path, yunet: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuses(path: Path, **_: object) -> None:
        raise ModelError(f"{path}: ONNX Runtime cannot load this model: opset 99")

    monkeypatch.setattr(onnxrt, "load", refuses)
    rm = resolve("yunet", models_dir, "face_detection")
    with caplog.at_level(logging.WARNING):
        assert open_model(rm, InferenceConfig(cpu_onnx="auto"), "detector").describe() == "cpu"
    assert "OpenCV's DNN runs it instead" in caplog.text
    with pytest.raises(ModelError, match="opset 99"):
        open_model(rm, InferenceConfig(cpu_onnx="onnxruntime"), "detector")


def test_cpu_onnx_setting_is_checked() -> None:
    data = {"cameras": [{"name": "cam", "source": "x.mp4"}], "inference": {"cpu_onnx": "tensorflow"}}
    with pytest.raises(ConfigError, match="cpu_onnx"):
        parse_config(data)


def test_detect_reads_pictures_with_onnx_runtime_when_installed(yunet: Path) -> None:
    """`edgeemo detect` (one picture at a time, memory no object) defaults to auto; what the
    daemon runs is inference.cpu_onnx, opencv by default."""
    from edgeemo.cli import make_parser

    assert make_parser().parse_args(["detect", "a.jpg"]).cpu_onnx == "auto"
    assert make_parser().parse_args(["detect", "--cpu-onnx", "opencv", "a.jpg"]).cpu_onnx == "opencv"
