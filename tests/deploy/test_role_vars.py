"""The role's decisions that need no gateway: what the example inventory does without its vault,
and when a gateway is treated as a Pi camera gateway (make test-deploy; seconds, no hosts)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.targets import ROOT

pytestmark = pytest.mark.deploy
BIN = (
    Path(os.environ.get("ANSIBLE_PLAYBOOK", ROOT / ".venv-deploy" / "bin" / "ansible-playbook"))
    .absolute()
    .parent
)
DEBUG_CREDENTIALS = ("-m", "ansible.builtin.debug", "-a", "var=edgeemo_credentials")
ENV = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def _ansible(*args: str) -> subprocess.CompletedProcess:
    if not (BIN / "ansible").exists():
        pytest.skip(f"needs ansible in {BIN} (make test-deploy installs it)")
    return subprocess.run(
        [str(BIN / "ansible"), *args],
        cwd=ROOT / "ansible",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_example_inventory_stops_on_a_missing_vault_variable() -> None:
    r = _ansible("-i", "inventory/example", "porch-gateway", *DEBUG_CREDENTIALS)
    assert r.returncode != 0
    assert "vault_porch_password is not set" in r.stdout + r.stderr
    assert "change-me" not in r.stdout + r.stderr
    r = _ansible(
        "-i", "inventory/example", "porch-gateway", *DEBUG_CREDENTIALS, "-e", "vault_porch_password=s3cr3t"
    )
    assert r.returncode == 0 and "s3cr3t" in r.stdout


@pytest.mark.parametrize(
    ("cameras", "pi"),
    [
        ([{"name": "hall", "source": "picamera2"}], True),
        ([{"name": "hall", "source": "/dev/video0", "type": "picamera2"}], True),
        (
            [{"name": "door", "source": "rtsp://192.0.2.1/s2"}, {"name": "desk", "source": "/dev/video0"}],
            False,
        ),
    ],
)
def test_a_pi_camera_makes_a_pi_camera_gateway(cameras: list[dict], pi: bool, tmp_path: Path) -> None:
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"edgeemo_cameras": cameras}))
    r = _ansible(
        "localhost", "-c", "local", "-m", "ansible.builtin.debug", "-a", "var=edgeemo_picamera2",
        "-e", "@roles/edgeemo/defaults/main.yml", "-e", f"@{extra}",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'"edgeemo_picamera2": {"true" if pi else "false"}' in r.stdout.lower().replace("'", '"'), r.stdout
