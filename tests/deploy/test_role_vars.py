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


@pytest.mark.parametrize(
    ("extra", "backend", "gpu"),
    [
        ({}, "cpu", False),
        ({"edgeemo_config_extra": {"inference": {"backend": "onnx"}}}, "onnx", True),
        ({"edgeemo_backend": "onnx"}, "onnx", True),
        ({"edgeemo_config_extra": {"inference": {"backend": "edgetpu"}}}, "edgetpu", False),
    ],
)
def test_backend_onnx_and_only_it_admits_the_gpu(
    extra: dict, backend: str, gpu: bool, tmp_path: Path
) -> None:
    """The backend comes from the config (edgeemo_config_extra) or edgeemo_backend, and only onnx
    installs the unit's Jetson GPU drop-in."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(
        json.dumps({"edgeemo_cameras": [{"name": "door", "source": "/dev/video0"}], **extra})
    )
    r = _ansible(
        "localhost", "-c", "local", "-m", "ansible.builtin.debug",
        "-a", "msg={{ edgeemo_backend }}/{{ edgeemo_gpu_devices | bool }}",
        "-e", "@roles/edgeemo/defaults/main.yml", "-e", f"@{vars_file}",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'"msg": "{backend}/{gpu}"' in r.stdout, r.stdout


def _onnxruntime_source(tmp_path: Path, case: dict) -> subprocess.CompletedProcess:
    """The role's onnxruntime_source.yml (what site.yml imports per gateway) with these vars."""
    if not (BIN / "ansible-playbook").exists():
        pytest.skip(f"needs ansible-playbook in {BIN} (make test-deploy installs it)")
    playbook, vars_file = tmp_path / "check.yml", tmp_path / "vars.json"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  vars:\n"
        "    edgeemo_wheel_target: {dir: d, machine: aarch64, python: '3.10', glibc: '2.35'}\n"
        "  tasks:\n    - ansible.builtin.import_role: {name: edgeemo, tasks_from: onnxruntime_source.yml}\n"
        '    - ansible.builtin.debug: {msg: \'ORT {{ edgeemo_onnxruntime.project | default("-") }}'
        ' {{ edgeemo_onnxruntime.requirement | default("-") }}\'}\n'
    )
    vars_file.write_text(json.dumps(case))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-c", "local", "-i", "localhost,", str(playbook),
         "-e", f"@{vars_file}"],
        cwd=ROOT / "ansible", env={**ENV, "ANSIBLE_ROLES_PATH": str(ROOT / "ansible" / "roles")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


JP6_WHEEL = "onnxruntime_gpu-1.20.0-cp310-cp310-linux_aarch64.whl"
PYPI_ORT = "onnxruntime>=1.17"


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ({}, "ORT - -"),  # backend cpu: no ONNX Runtime
        # backend cpu with YuNet on ONNX Runtime (inference.cpu_onnx): PyPI's CPU build
        ({"edgeemo_config_extra": {"inference": {"cpu_onnx": "onnxruntime"}}}, f"ORT onnxruntime {PYPI_ORT}"),
        ({"edgeemo_config_extra": {"inference": {"cpu_onnx": "auto"}}}, f"ORT onnxruntime {PYPI_ORT}"),
        ({"edgeemo_config_extra": {"inference": {"cpu_onnx": "opencv"}}}, "ORT - -"),
        ({"edgeemo_backend": "onnx"}, "ORT onnxruntime onnxruntime>=1.17"),  # PyPI's CPU build
        ({"edgeemo_backend": "onnx", "edgeemo_onnxruntime_wheel": f"https://example.invalid/jp6/{JP6_WHEEL}"},
         f"ORT onnxruntime-gpu /opt/edgeemo/wheelhouse/{JP6_WHEEL}"),
        ({"edgeemo_backend": "onnx", "edgeemo_onnxruntime_wheel": "https://example.invalid/get?id=7",
          "edgeemo_onnxruntime_wheel_name": JP6_WHEEL},
         f"ORT onnxruntime-gpu /opt/edgeemo/wheelhouse/{JP6_WHEEL}"),
        ({"edgeemo_backend": "onnx", "edgeemo_onnxruntime_index_url": "https://example.invalid/simple",
          "edgeemo_onnxruntime_package": "onnxruntime_gpu==1.20.0"},
         "ORT onnxruntime-gpu onnxruntime_gpu==1.20.0"),
    ],
)  # fmt: skip
def test_which_onnxruntime_a_gateway_gets(case: dict, says: str, tmp_path: Path) -> None:
    r = _onnxruntime_source(tmp_path, case)
    assert r.returncode == 0, r.stdout[-2000:]
    assert f'"msg": "{says}"' in r.stdout, r.stdout[-2000:]


@pytest.mark.parametrize(
    "case",
    [
        {"edgeemo_backend": "onnx", "edgeemo_config_extra": {"inference": {"backend": "cpu"}}},
        {"edgeemo_backend": "onnx", "edgeemo_onnxruntime_wheel": f"/w/{JP6_WHEEL}",
         "edgeemo_onnxruntime_index_url": "https://example.invalid/simple"},
        {"edgeemo_backend": "onnx", "edgeemo_onnxruntime_wheel": "https://example.invalid/get?id=7"},
        {"edgeemo_backend": "gpu"},
        {"edgeemo_config_extra": {"inference": {"cpu_onnx": "tensorflow"}}},
        {"edgeemo_cpu_onnx": "opencv", "edgeemo_config_extra": {"inference": {"cpu_onnx": "onnxruntime"}}},
    ],
    ids=[
        "backend-disagrees", "wheel-and-index", "url-without-wheel-name", "unknown-backend",
        "unknown-cpu-onnx", "cpu-onnx-disagrees",
    ],
)  # fmt: skip
def test_onnxruntime_settings_that_cannot_work_stop_the_play(case: dict, tmp_path: Path) -> None:
    r = _onnxruntime_source(tmp_path, case)
    assert r.returncode != 0, r.stdout[-2000:]
    assert "edgeemo_backend must be cpu, edgetpu or onnx" in r.stdout, r.stdout[-2000:]
