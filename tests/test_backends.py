"""Inference backends: CPU through LiteRT, the Edge TPU delegate's failure modes, bad files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgeemo.backends import AcceleratorUnavailable, ModelError, load_model
from edgeemo.config import InferenceConfig
from edgeemo.modelstore import ResolvedModel, open_model, resolve
from tests.conftest import fresh_python, run_cli, shared_path

EDGETPU_FACE = ("models", "edgetpu", "face-detector-quantized_edgetpu.tflite")


@pytest.fixture(scope="session")
def no_device_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library that loads like libedgetpu but finds no device (its factory returns NULL)."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the stand-in Edge TPU library")
    d = tmp_path_factory.mktemp("fakelib")
    src = d / "fake.c"
    src.write_text(
        "void* tflite_plugin_create_delegate(char** k, char** v, unsigned long n, void (*e)(const char*))"
        " { return 0; }\nvoid tflite_plugin_destroy_delegate(void* d) {}\n"
    )
    lib = d / "libfakeedgetpu.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def test_cpu_backend_runs_int8_model() -> None:
    model = load_model(Path(shared_path("models", "edgetpu", "mobilenet_v1_0.25_128_quant.tflite")), "cpu")
    import numpy as np

    out = model.run(np.zeros((2, 128, 128, 3), np.float32))[0]
    assert out.shape == (2, 1001) and out.dtype == np.float32  # dequantised for the caller


def test_fixed_batch_model_runs_item_by_item_and_stops_asking(models_dir: Path) -> None:
    """The two-network emotion model has its batch baked in: several faces run one at a time,
    with the same answers, and after the first refusal no call re-allocates tensors again."""
    import numpy as np

    model = load_model(models_dir / "edgeemo_fer_int8.tflite", "cpu")
    rng = np.random.default_rng(0)
    faces = rng.random((3, 48, 48, 1), dtype=np.float32)
    one_by_one = np.concatenate([model.run(faces[i : i + 1])[0] for i in range(3)])
    assert np.array_equal(model.run(faces)[0], one_by_one)
    assert np.array_equal(model.run(faces[:2])[0], one_by_one[:2])  # each size is asked once
    allocations = 0
    allocate = model._it.allocate_tensors

    def counted() -> None:
        nonlocal allocations
        allocations += 1
        allocate()

    model._it.allocate_tensors = counted
    assert np.array_equal(model.run(faces)[0], one_by_one)
    assert np.array_equal(model.run(faces[:2])[0], one_by_one[:2])
    assert allocations == 0


@pytest.mark.shared
def test_edgetpu_without_runtime_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEEMO_EDGETPU_LIB", raising=False)
    with pytest.raises(AcceleratorUnavailable) as e:
        load_model(shared_path(*EDGETPU_FACE), "edgetpu")
    msg = str(e.value)
    assert "\n" not in msg
    assert "libedgetpu.so.1 is not installed" in msg and "libedgetpu1-std" in msg and "lsusb" in msg


@pytest.mark.shared
def test_edgetpu_without_device_says_what_to_check(
    monkeypatch: pytest.MonkeyPatch, no_device_lib: Path
) -> None:
    monkeypatch.setenv("EDGEEMO_EDGETPU_LIB", str(no_device_lib))
    with pytest.raises(
        AcceleratorUnavailable, match=r"loaded but no Edge TPU device answered .device 'usb'.*plugged"
    ):
        load_model(shared_path(*EDGETPU_FACE), "edgetpu", device="usb")


@pytest.mark.shared
def test_compiled_model_on_cpu_is_explained() -> None:
    with pytest.raises(ModelError, match="compiled for the Coral Edge TPU and cannot run on the CPU"):
        load_model(shared_path(*EDGETPU_FACE), "cpu")


@pytest.mark.shared
def test_edgetpu_falls_back_to_the_cpu_model(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    rm = resolve("short_range", models_dir, "face_detection", {"edgetpu": str(shared_path(*EDGETPU_FACE))})
    assert isinstance(rm, ResolvedModel) and rm.files.get("edgetpu") is not None
    model = open_model(rm, InferenceConfig(backend="edgetpu", fallback="cpu"), "camera x detector")
    assert model.backend == "cpu" and model.path == rm.cpu_file
    assert any("falling back to the CPU model" in r.message for r in caplog.records)
    with pytest.raises(AcceleratorUnavailable, match="camera x detector: Edge TPU runtime"):
        open_model(rm, InferenceConfig(backend="edgetpu", fallback="none"), "camera x detector")


@pytest.mark.shared
def test_daemon_carries_on_with_cpu_when_edgetpu_missing(models_dir: Path, astronaut_png: Path) -> None:
    """`detect` with the Edge TPU BlazeFace selected: one warning line, then CPU results."""
    r = run_cli(
        "detect",
        str(astronaut_png),
        "--json",
        "--backend",
        "edgetpu",
        "--detector-edgetpu",
        str(shared_path(*EDGETPU_FACE)),
        "--models-dir",
        str(models_dir),
    )
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "Edge TPU" in line]
    assert len(warnings) == 1 and "falling back to the CPU" in warnings[0]
    assert '"emotion": "happy"' in r.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not a TFLite model"),
        (b"\x18\x00\x00\x00TFL3" + b"\x00" * 40, "TFL"),
        (b"hello world, no model", "not a TFLite"),
    ],
)
def test_truncated_or_wrong_model_files(tmp_path: Path, content: bytes, expected: str) -> None:
    p = tmp_path / "broken.tflite"
    p.write_bytes(content)
    with pytest.raises(ModelError, match=expected):
        load_model(p, "cpu")


def test_truncated_real_model(tmp_path: Path, models_dir: Path) -> None:
    real = (models_dir / "face_detection_short_range.tflite").read_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(real[: len(real) // 3])
    with pytest.raises(ModelError, match=str(p.name)):
        load_model(p, "cpu")


def test_missing_model_and_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="run `edgeemo models fetch`"):
        resolve("short_range", tmp_path, "face_detection")
    # Our own model has no download: outside a checkout, fetch cannot install it.
    with pytest.raises(ModelError, match=r"copy edgeemo_fer_int8\.tflite from a release checkout"):
        resolve("edgeemo_fer_int8", tmp_path, "emotion")
    with pytest.raises(ModelError, match="manifest beside it"):
        resolve(str(tmp_path / "mine.tflite"), tmp_path, "emotion")
    with pytest.raises(ModelError, match="unknown inference backend 'gpu'"):
        load_model(tmp_path / "x.tflite", "gpu")


def test_run_with_missing_models_is_one_line_per_model(tmp_path: Path) -> None:
    r = run_cli("run", "--source", "x.mp4", "--models-dir", str(tmp_path))
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all("edgeemo models fetch" in line for line in lines), lines
    assert lines[0].startswith("edgeemo: model error: emotion.model:") and "detector.model:" in lines[1]


def test_cpu_backend_does_not_import_the_edgetpu_module() -> None:
    code = (
        "import sys; from edgeemo.backends import load_model; from pathlib import Path; "
        "print('edgeemo.backends.edgetpu' in sys.modules)"
    )
    assert fresh_python(code) == "False"


def test_fallback_none_without_a_compiled_model_stops(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No Edge TPU twin: fallback none stops (exit 1), fallback cpu runs on the CPU and says so."""
    rm = resolve("short_range", models_dir, "face_detection")
    assert "edgetpu" not in rm.files
    with pytest.raises(AcceleratorUnavailable, match=r"no edgetpu compiled model.*fallback is none") as e:
        open_model(rm, InferenceConfig(backend="edgetpu", fallback="none"), "camera x detector")
    assert e.value.exit_code == 1
    model = open_model(rm, InferenceConfig(backend="edgetpu", fallback="cpu"), "camera x detector")
    assert model.backend == "cpu"
    assert any(r.levelname == "WARNING" and "running it on the CPU" in r.message for r in caplog.records)


def test_detect_on_edgetpu_never_silently_runs_on_the_cpu(models_dir: Path, astronaut_png: Path) -> None:
    args = ("detect", str(astronaut_png), "--json", "--backend", "edgetpu", "--models-dir", str(models_dir))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "running it on the CPU" in r.stderr and '"emotion": "happy"' in r.stdout
    r = run_cli(*args, "--fallback", "none")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "fallback is none" in r.stderr, r.stderr


def test_daemon_with_fallback_none_and_no_compiled_model_exits_1(
    models_dir: Path, astronaut_png: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(
        f"models_dir: {models_dir}\nstate_dir: {tmp_path / 'state'}\n"
        "inference: {backend: edgetpu, fallback: none}\n"
        f"mqtt: {{host: 127.0.0.1, port: 1}}\ncameras: [{{name: c, source: '{astronaut_png}'}}]\n"
    )
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode == 1, r.stderr
    assert "fallback is none" in r.stderr and "Traceback" not in r.stderr
