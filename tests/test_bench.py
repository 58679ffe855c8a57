"""`edgeemo bench` runs every pipeline on the same clip and reports in the documented shape.

Speed itself is measured by the command and reported in docs/benchmarks.md, never asserted
here; these tests check what could silently go wrong: the clip's ground truth, the JSON.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
from conftest import run_cli

from edgeemo.tools import bench


def test_clip_truth_matches_what_a_detector_finds(tmp_path: Path, models_dir: Path) -> None:
    truth = bench.make_bench_clip(tmp_path / "c.mp4", models_dir, frames=30)
    assert [len(t) for t in truth] == [0] * 10 + [1] * 10 + [3] * 10
    for detector in ("full_range", "short_range"):  # the three sitting faces suit both detectors
        r = bench.run_edgeemo(tmp_path / "c.mp4", truth, models_dir, "edgeemo_fer_int8", detector, True)
        assert r.frames == 30 and r.truth == 40
        assert r.matched >= 39, detector  # the placed faces are found where the truth says they are


def test_the_moving_clip_never_stands_still(tmp_path: Path, models_dir: Path) -> None:
    truth = bench.make_bench_clip(tmp_path / "m.mp4", models_dir, frames=45, moving=True)
    assert [len(t) for t in truth] == [1] * 15 + [2] * 15 + [3] * 15
    for a, b in itertools.pairwise(truth):
        if len(a) == len(b):  # every face moves a little between frames (the gate skips little)
            assert (np.abs(a - b).max(axis=1) >= 1).all()
    r = bench.run_edgeemo(tmp_path / "m.mp4", truth, models_dir, "edgeemo_fer_int8", "short_range", True)
    assert r.frames == 45 and r.matched >= r.truth - 1  # the faces are where the truth says


def test_bench_json_has_every_pipeline_and_ratio(models_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "scaling.png"
    r = run_cli("bench", "--json", "--frames", "30", "--cameras", "1,2", "--plot", str(plot), timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    pipes = out["pipelines"]
    assert {"edgeemo", "edgeemo_every_frame", "edgeemo_full_range", "fer_style", "resnet18"} <= set(pipes)
    for name in ("edgeemo", "edgeemo_every_frame", "edgeemo_full_range", "fer_style"):
        p = pipes[name]
        assert p["frames"] == 30 and p["fps"] > 0 and p["p95_ms"] >= p["ms_per_frame"] > 0
        assert {"decode", "detect", "classify"} <= set(p["stages"])
        assert 0 <= p["recall"] <= 1
    # At detect_fps 5 a third of these 15 fps frames at most is analysed; the others count with
    # the faces tracked, which on this short clip's fast walker lag behind by up to two frames.
    assert pipes["edgeemo_full_range"]["recall"] >= 0.85
    assert pipes["edgeemo_every_frame"]["recall"] == 1.0
    # The gates skip frames, and what they skip still counts, with the faces it tracks.
    assert pipes["edgeemo_every_frame"]["analysed_share"] == 1.0 > pipes["edgeemo"]["analysed_share"]
    assert pipes["edgeemo"]["analysed_share"] <= 0.34  # detect_fps 5 of 15
    assert pipes["edgeemo_uncapped_moving"]["analysed_share"] > pipes["edgeemo_moving"]["analysed_share"]
    assert pipes["edgeemo"]["recall"] >= pipes["edgeemo_every_frame"]["recall"] - 0.15  # (as above)
    # Side by side per backend: the same chain on ONNX Runtime finds the same faces.
    onnx = pipes["edgeemo_onnx_every_frame"]
    assert onnx["analysed_share"] == 1.0 and onnx["fps"] > 0 and "classify" in onnx["stages"]
    assert abs(onnx["recall"] - pipes["edgeemo_every_frame"]["recall"]) <= 0.05
    assert out["ratio_vs_fer_style"] == round(pipes["edgeemo"]["fps"] / pipes["fer_style"]["fps"], 1)
    # Without torch in this venv the large-model pipeline says so instead of vanishing.
    assert "fps" in pipes["resnet18"] or "torch is not installed" in pipes["resnet18"]["skipped"]
    # The moving clip: the same rows, and the gate can skip little of it.
    for name in ("edgeemo_moving", "edgeemo_every_frame_moving", "fer_style_moving"):
        assert pipes[name]["frames"] == 30 and pipes[name]["recall"] > 0.9, name
        assert pipes[name]["cpu_ms_per_frame"] > 0
    assert pipes["edgeemo_every_frame_moving"]["analysed_share"] == 1.0
    assert pipes["edgeemo_moving"]["analysed_share"] > pipes["edgeemo"]["analysed_share"]
    ratios = out["ratios"]
    assert set(out["ratios_cpu"]) == set(ratios) and all(v > 0 for v in out["ratios_cpu"].values())
    for mine in ("edgeemo", "edgeemo_every_frame", "edgeemo_moving", "edgeemo_every_frame_moving"):
        ref = "fer_style_moving" if mine.endswith("_moving") else "fer_style"
        assert ratios[f"{mine}_vs_fer_style"] == round(pipes[mine]["fps"] / pipes[ref]["fps"], 1)
    assert [p["cameras"] for p in out["parallel"]] == [1, 2]
    assert all(p["total_fps"] > 0 for p in out["parallel"])
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 10
    assert out["peak_rss_mb"] > 0 and out["machine"]["cores"] >= 1
