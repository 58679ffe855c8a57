"""Smoke test of the training and export code (``make test-train``; needs the train venv).

Trains for one short epoch on a slice of FER2013, exports the full-int8 file and checks it
through the runtime exactly as the shipped model is checked. Skipped, saying why, where the
train venv (torch, litert-torch, ai-edge-quantizer: ~2 GB) is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_path

from edgeemo.tools.modelcheck import inspect_tflite

TRAIN_PY = Path(os.environ.get("TRAIN_PY", ROOT / ".venv-train" / "bin" / "python"))


def _train_python() -> Path:
    if not TRAIN_PY.exists():
        pytest.skip(f"needs the train venv ({TRAIN_PY}); `make test-train` creates it")
    return TRAIN_PY


def test_train_then_export_gives_an_integer_only_model(tmp_path: Path) -> None:
    py = _train_python()
    data = shared_path("data", "fer2013")
    out = tmp_path / "run"
    subprocess.run(
        [str(py), "-m", "edgeemo.training.train", "--data", str(data), "--out", str(out),
         "--epochs", "1", "--limit", "1024", "--val", "256", "--threads", "1"],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    curve = json.loads((out / "curve.json").read_text())
    assert len(curve) == 1 and 0 <= curve[0]["publictest_accuracy"] <= 1
    assert 0 <= curve[0]["val_accuracy"] <= 1 and 0 <= curve[0]["val_macro_f1"] <= 1
    # Distil a second run from the first: the teacher's labelling runs and training still scores.
    student = tmp_path / "student"
    r = subprocess.run(
        [str(py), "-m", "edgeemo.training.train", "--data", str(data), "--out", str(student),
         "--epochs", "1", "--limit", "512", "--threads", "1", "--teacher", str(out / "model.pt"),
         "--teacher-views", "2"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "teacher: 2 views labelled" in r.stdout
    assert 0 <= json.loads((student / "curve.json").read_text())[0]["publictest_accuracy"] <= 1
    models = tmp_path / "models"
    subprocess.run(
        [str(py), "-m", "edgeemo.training.export", "--checkpoint", str(out / "model.pt"),
         "--checkpoint", str(student / "model.pt"), "--data", str(data), "--out-dir", str(models),
         "--float-out", str(tmp_path / "float.tflite"), "--calibration", "50", "--no-catalog"],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    info = inspect_tflite(models / "edgeemo_fer_int8.tflite")
    assert info["float_tensors"] == 0 and info["non_edgetpu_ops"] == []
    # The probabilities keep their whole range (softmax's int8 grid, 1/256 from -128): the
    # calibrated range alone capped them at ~0.65.
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(models / "edgeemo_fer_int8.tflite"))
    scale, zero = it.get_output_details()[0]["quantization"]
    assert (scale, zero) == (1 / 256, -128)
    assert inspect_tflite(tmp_path / "float.tflite")["input"]["dtype"] == "float32"
    # Each network as a file of its own for the CPU's early exit, pinned in the manifest.
    entry = json.loads((models / "edgeemo_fer_int8.json").read_text())
    files = [m["file"] for m in entry["early_exit"]["members"]]
    assert files == ["edgeemo_fer_int8.m1.tflite", "edgeemo_fer_int8.m2.tflite"]
    assert all(inspect_tflite(models / f)["float_tensors"] == 0 for f in files)


def test_missing_teacher_is_named_before_any_work(tmp_path: Path) -> None:
    py = _train_python()
    r = subprocess.run(
        [str(py), "-m", "edgeemo.training.train", "--out", str(tmp_path / "run"),
         "--teacher", str(tmp_path / "gone.pt")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "gone.pt: no such checkpoint" in r.stderr
    assert not (tmp_path / "run").exists()


def test_augmentation_keeps_shape_and_range() -> None:
    py = _train_python()
    code = (
        "import torch; from edgeemo.training.augment import augment; "
        "g = torch.Generator().manual_seed(0); x = torch.rand(64, 1, 48, 48); y = augment(x.clone(), g); "
        "print(tuple(y.shape), float(y.min()) >= 0, float(y.max()) <= 1, float((y - x).abs().mean()) > 0.01)"
    )
    r = subprocess.run([str(py), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "(64, 1, 48, 48) True True True"


def test_view_bank_labels_exactly_the_view_the_student_sees() -> None:
    py = _train_python()
    code = """
import torch
from edgeemo.training.distill import build_view_bank, teacher_probs
from edgeemo.training.net import EmoNet, Ensemble
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
teacher = Ensemble([EmoNet(width=8), EmoNet(width=8)]).eval()
x = torch.rand(40, 1, 48, 48)
bank = build_view_bank(teacher, x, 3, g, batch=16)
clean = bool((bank.views[0] == x.mul(255).round().to(torch.uint8)).all())
augmented = float((bank.views[1].float() - bank.views[0].float()).abs().mean()) > 1
sums = bool(torch.allclose(bank.probs.sum(-1), torch.ones(3, 40), atol=1e-3))
xb, pb = bank.batch(torch.arange(40), g)
again = teacher_probs(teacher, xb)
print(clean, augmented, sums, float((again - pb).abs().max()) < 1e-4)
"""
    r = subprocess.run([str(py), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "True True True True"


def test_cross_fitted_teachers_label_only_the_faces_they_never_saw() -> None:
    py = _train_python()
    code = """
import numpy as np, torch
import torch.nn.functional as F
from edgeemo.training.distill import build_view_bank, fold_of, teacher_folds, teacher_probs
from edgeemo.training.net import EmoNet, Ensemble
torch.manual_seed(0)
a, b = EmoNet(width=8).eval(), EmoNet(width=8).eval()
teacher = Ensemble([a, b], [((0, 2), 100), ((1, 2), 100)])
folds = teacher_folds(teacher, ["a.pt", "b.pt"], 100, 40, torch.device("cpu"))
f = fold_of(100, 2)[:40]
exact = bool((folds[0].numpy() == (f == 0)).all() and (folds[1].numpy() == (f == 1)).all())
x = torch.rand(40, 1, 48, 48)
p = teacher_probs(teacher, x, folds)
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    pa, pb = F.softmax(a(x).float(), 1), F.softmax(b(x).float(), 1)
want = torch.where(torch.from_numpy(f == 0)[:, None], pa, pb)
own = float((p - want).abs().max()) < 1e-3
balanced = abs(int((fold_of(28000, 3) == 0).sum()) - 28000 // 3) <= 1
bank = build_view_bank(teacher, x, 2, torch.Generator().manual_seed(0), batch=16, folds=folds)
sums = bool(torch.allclose(bank.probs.sum(-1), torch.ones(2, 40), atol=1e-3))
try:
    teacher_folds(teacher, ["a.pt", "b.pt"], 99, 40, torch.device("cpu"))
    named = False
except SystemExit as e:
    named = "a.pt" in str(e) and "--val" in str(e)
print(exact, own, balanced, sums, named)
"""
    r = subprocess.run([str(py), "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == "True True True True True", r.stdout + r.stderr[-2000:]


def test_ferplus_targets_mix_votes_and_labels() -> None:
    from edgeemo.ferdata import ferplus_distribution, ferplus_majority

    votes = np.array(
        [[0, 10, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], [5, 0, 0, 5, 0, 0, 0, 0, 0, 0]]
    )
    dist, ok = ferplus_distribution(votes)
    assert ok.tolist() == [True, False, True]
    assert dist[0, 3] == 1.0 and dist[2, 6] == dist[2, 4] == 0.5  # happiness → happy; neutral/sad split
    assert ferplus_majority(votes).tolist() == [3, -1, 6]


def test_accelerator_recipe_dry_run_brings_back_every_step(tmp_path: Path) -> None:
    """scripts/train-accelerator.sh --dry-run: the lease run's steps on the CPU, tiny, then the
    export and `edgeemo eval` the real run gets here; the shipped model is never touched."""
    py = _train_python()
    data = shared_path("data", "fer2013")
    shipped = (ROOT / "models" / "edgeemo_fer_int8.tflite").read_bytes()
    out, work = tmp_path / "out", tmp_path / "work"
    env = os.environ | {
        "TRAIN_PY": str(py), "ACCEL_OUT": str(out), "ACCEL_WORK": str(work), "FER2013_DIR": str(data),
        "EDGEEMO": str(ROOT / ".venv" / "bin" / "edgeemo"), "CROSSFIT": "1",
    }  # fmt: skip
    r = subprocess.run(
        ["bash", "scripts/train-accelerator.sh", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "teachers (seeds 1 2) start" in r.stdout and "dry run done" in r.stdout
    # What a lease brings back: the split tar holds both teachers' and students' checkpoints.
    parts = sorted(out.glob("run.tar.part-*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    listing = subprocess.run(
        f"cat {' '.join(map(str, parts))} | tar -tf -", shell=True, capture_output=True, text=True, check=True
    ).stdout
    for name in ("t1/model.pt", "t2/model.pt", "m1/model.pt", "m2/model.pt", "m1/curve.json", "t1.log"):
        assert f"./{name}" in listing.split()
    assert json.loads((work / "t1" / "curve.json").read_text())[0]["epoch"] == 1
    # CROSSFIT=1: each teacher trained on its half of the slice and labelled only the other.
    assert "fold 0/2: training on" in (work / "t1.log").read_text()
    assert "fold 1/2: training on" in (work / "t2.log").read_text()
    assert inspect_tflite(out / "models" / "edgeemo_fer_int8.tflite")["float_tensors"] == 0
    report = json.loads((out / "eval_fer2013.json").read_text())
    assert 0 <= report["accuracy"] <= 1 and report["ms_per_face"] > 0
    assert (ROOT / "models" / "edgeemo_fer_int8.tflite").read_bytes() == shipped


def test_time_budget_sizes_the_epochs_and_stops_in_time() -> None:
    py = _train_python()
    code = """
import time
from edgeemo.training.train import EpochPlan
p = EpochPlan(400, budget_s=100, started=time.monotonic() - 30)  # 30 s spent before epoch 1 ended
p.after_epoch(1, 6.0)   # ~70 s left, 6 s an epoch: 90% of it holds 10 more
a = p.total
p.after_epoch(2, 14.0)  # slower now (a neighbour started): re-sized down
b = p.total
p.after_epoch(3, 1.0)   # not a re-sizing point: the schedule stays
c = p.total
fixed = EpochPlan(50, budget_s=0, started=0.0)
fixed.after_epoch(1, 1e6)
late = EpochPlan(400, budget_s=10, started=time.monotonic() - 11)
print(a, b, c, fixed.total, fixed.out_of_time(), late.out_of_time())
"""
    r = subprocess.run([str(py), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["11", "6", "6", "50", "False", "True"]


def test_packed_teacher_comes_back_within_int8_rounding(tmp_path: Path) -> None:
    py = _train_python()
    code = f"""
import torch
from pathlib import Path
from edgeemo.training.net import VGGTeacher, load_trained
from edgeemo.training.pack import pack_teacher, unpack_teacher
torch.manual_seed(0)
net = VGGTeacher().eval()
src, packed, back = Path("{tmp_path}/t.pt"), Path("{tmp_path}/t.int8.pt"), Path("{tmp_path}/t.back.pt")
torch.save({{"state_dict": net.state_dict(), "args": {{"arch": "vgg"}}, "epoch": 3}}, src)
pack_teacher(src, packed)
unpack_teacher(packed, back)
x = torch.rand(16, 1, 48, 48)
with torch.no_grad():
    a, b = torch.softmax(net(x), 1), load_trained([back])(x)
print(packed.stat().st_size < 0.3 * src.stat().st_size, float((a - b).abs().max()) < 0.02)
"""
    r = subprocess.run([str(py), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["True", "True"]
