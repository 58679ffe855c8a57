"""Model files as the service user meets them: installed readable, and unusable ones stop the
daemon with one line and exit 78 (not a traceback and a restart loop)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgeemo.modelstore import catalog, fetch
from tests.conftest import ROOT

NOBODY = 65534


def test_fetch_installs_model_files_readable_by_everyone(tmp_path: Path) -> None:
    old = os.umask(0o077)  # a strict installer umask must not leak into the files either
    try:
        fetch(tmp_path, ["short_range", "edgeemo_fer_int8"], ROOT / ".cache" / "wheels")
    finally:
        os.umask(old)
    cat = catalog()
    for name in ("short_range", "edgeemo_fer_int8"):
        for p in (tmp_path / cat[name].file, (tmp_path / cat[name].file).with_suffix(".json")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, (p, oct(p.stat().st_mode))


def test_fetch_repairs_an_unreadable_installed_model(tmp_path: Path) -> None:
    fetch(tmp_path, ["short_range"], ROOT / ".cache" / "wheels")
    model = tmp_path / catalog()["short_range"].file
    model.chmod(0o600)  # as older versions left it
    fetch(tmp_path, ["short_range"], ROOT / ".cache" / "wheels")
    assert stat.S_IMODE(model.stat().st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_model_is_one_line_and_exit_78(models_dir: Path, astronaut_png: Path) -> None:
    """The daemon as an unprivileged user (as under the unit's User=edgeemo) and a 0600 model."""
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable]
    probe = subprocess.run([*as_nobody, "-c", "import edgeemo"], capture_output=True, cwd="/", timeout=60)
    if probe.returncode != 0:  # e.g. a checkout under /root (0700), as in make test-fresh
        pytest.skip(f"uid {NOBODY} cannot import edgeemo from this checkout: {probe.stderr.decode().strip()}")
    d = Path(tempfile.mkdtemp(prefix="edgeemo-perm-"))
    try:
        d.chmod(0o755)
        for name in ("short_range", "edgeemo_fer_int8"):
            f = models_dir / catalog()[name].file
            shutil.copy(f, d / f.name)
            shutil.copy(f.with_suffix(".json"), d / f.with_suffix(".json").name)
            (d / f.name).chmod(0o644)
        image = d / "face.png"
        shutil.copy(astronaut_png, image)
        image.chmod(0o644)
        locked = d / catalog()["short_range"].file
        locked.chmod(0o600)
        r = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-m", "edgeemo", "detect", str(image), "--models-dir", str(d)],
            capture_output=True, text=True, timeout=60, cwd=d,
        )  # fmt: skip
        assert r.returncode == 78, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(locked) in lines[0] and "not readable" in lines[0] and "chmod 0644" in lines[0]
    finally:
        shutil.rmtree(d)
