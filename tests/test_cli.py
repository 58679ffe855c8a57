"""The edgeemo command as a user meets it: help, pipes, and messages that say what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import ROOT, run_cli


def test_output_into_a_closed_pipe_is_no_traceback() -> None:
    """`edgeemo models inspect FILE | head`: the reader leaves early; edgeemo stops quietly."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeemo",
            "models",
            "inspect",
            str(ROOT / "models" / "edgeemo_fer_int8.tflite"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # like `head` after its lines
    err = p.stderr.read().decode()
    assert p.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_top_level_help_lists_every_command_and_options_have_help() -> None:
    out = run_cli("--help").stdout
    for cmd in ("run", "check-config", "detect", "eval", "bench", "models", "demo"):
        assert cmd in out.split("positional arguments")[0], cmd
    detect = run_cli("detect", "--help").stdout
    for opt in ("--emotion-model", "--threshold", "--backend", "--fallback"):
        after = detect.split(opt, 1)[1].split("\n  --")[0]
        assert len(after.split()) > 2, f"{opt} has no help"
    assert "--loop" in run_cli("run", "--help").stdout


def test_eval_on_an_image_or_a_wrong_file_says_what_eval_wants(tmp_path: Path, astronaut_png: Path) -> None:
    r = run_cli("eval", "--data", str(astronaut_png))
    assert r.returncode == 2 and "edgeemo detect" in r.stderr and "pickle" not in r.stderr, r.stderr
    junk = tmp_path / "x.npy"
    np.save(junk, np.array([{"a": 1}], dtype=object))
    r = run_cli("eval", "--data", str(junk))
    assert r.returncode == 2 and "images (uint8" in r.stderr and "pickle" not in r.stderr, r.stderr


def test_loop_needs_a_source() -> None:
    r = run_cli("run", "--loop")
    assert r.returncode == 78 and "--loop goes with --source" in r.stderr


def test_every_log_line_has_time_and_level(daemon) -> None:  # type: ignore[no-untyped-def]
    """No raw OpenCV/FFmpeg or TFLite runtime lines ("[ WARN:0@…]", "INFO: Created TensorFlow
    Lite XNNPACK delegate") in the journal: each line has edgeemo's time and level."""
    import re
    import time

    d = daemon("--source", "/dev/video77", "--mqtt", "mqtt://127.0.0.1:1")
    deadline = time.monotonic() + 30
    while "retrying in" not in d.log and time.monotonic() < deadline:
        time.sleep(0.2)
    d.stop()
    lines = [line for line in d.log.splitlines() if line.strip()]
    assert any("V4L2 device /dev/video77" in line for line in lines), d.log
    raw = [line for line in lines if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", line)]
    assert raw == [], raw


def test_mqtt_url_with_an_impossible_port_says_the_range() -> None:
    r = run_cli("run", "--source", "x.mp4", "--mqtt", "mqtt://127.0.0.1:99999")
    assert r.returncode == 78 and "port must be a number from 1 to 65535" in r.stderr, r.stderr
