"""The Ansible role against two real systemd hosts (make test-deploy).

Order matters: each test starts from the fleet the previous one left. A first rollout, a
rerun that changes nothing, a config change that restarts once, a bad config that fails
before the running service is touched, a broken release that stops after one gateway, and
new code under the same version number, rolled out and then rolled back; then backend onnx on
one gateway, given an onnxruntime-gpu wheel (a stand-in: tests/deploy/wheels.py), and back.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgeemo.tools.devtools import make_demo_clip, mosquitto_path
from tests.deploy.targets import ROOT, Target, base_root, missing_capability
from tests.deploy.wheels import renamed_wheel

pytestmark = pytest.mark.deploy
ANSIBLE = ROOT / "ansible"
PLAYBOOK_BIN = Path(
    os.environ.get("ANSIBLE_PLAYBOOK", ROOT / ".venv-deploy" / "bin" / "ansible-playbook")
).absolute()
BROKER_PORT = 18830
DROPIN = "/etc/systemd/system/edgeemo.service.d/jetson-gpu.conf"
VENV_PY = "/opt/edgeemo/venv/bin/python"


class Fleet:
    def __init__(self, work: Path, targets: list[Target]) -> None:
        self.work, self.targets = work, targets
        self.host_vars: dict[str, dict] = {
            t.name: {
                "ansible_host": t.ip,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(ROOT / ".cache" / "deploy" / "id_ed25519"),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "edgeemo_cameras": [
                    {"name": "visit", "source": "/opt/edgeemo/clips/visit.mp4", "loop": True}
                ],
                "edgeemo_mqtt": {"host": t.host_ip, "port": BROKER_PORT},
            }
            for t in targets
        }

    def play(self, **extra_vars: object) -> subprocess.CompletedProcess:
        inventory = self.work / "hosts.yml"
        hosts = {"all": {"children": {"edgeemo_gateways": {"hosts": self.host_vars}}}}
        inventory.write_text(yaml.safe_dump(hosts))
        cmd = [str(PLAYBOOK_BIN), "-i", str(inventory), "site.yml"]
        for k, v in extra_vars.items():
            cmd += ["-e", f"{k}={v}"]
        env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        return subprocess.run(cmd, cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=900)


def recap(out: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines → {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    rows = re.findall(r"^(\S+)\s+:\s+(.*)$", out.split("PLAY RECAP")[-1], re.M)
    return {h: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)} for h, rest in rows}


def main_pid(t: Target) -> str:
    return t.ssh("systemctl show -p MainPID --value edgeemo").stdout.strip()


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    why = missing_capability()
    if why:
        pytest.skip(f"real systemd targets: {why}")
    if not PLAYBOOK_BIN.exists():
        pytest.skip(f"{PLAYBOOK_BIN} missing: `make test-deploy` installs ansible-core")
    if not mosquitto_path():
        pytest.skip("mosquitto is not installed")
    base = base_root()
    work = Path(tempfile.mkdtemp(prefix="edgeemo-deploy-"))
    targets = [Target(f"gw{i}", 100 + i, work / f"gw{i}") for i in (1, 2)]
    conf = work / "mosquitto.conf"
    conf.write_text(
        "".join(f"listener {BROKER_PORT} {t.host_ip}\n" for t in targets) + "allow_anonymous true\n"
    )
    broker = None
    try:
        for t in targets:
            t.start(base)
        broker = subprocess.Popen([mosquitto_path(), "-c", str(conf)], stderr=subprocess.DEVNULL)
        clip = make_demo_clip(work / "visit.mp4", fps=15, seconds=8.0)
        for t in targets:
            t.ssh("mkdir -p /opt/edgeemo/clips")
            t.copy_in(clip, "/opt/edgeemo/clips/visit.mp4")
        yield Fleet(work, targets)
    finally:
        if broker:
            broker.terminate()
        for t in targets:
            t.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_first_rollout_runs_the_service(fleet: Fleet) -> None:
    r = fleet.play()
    assert r.returncode == 0, r.stdout[-3000:]
    for t in fleet.targets:
        assert t.ssh("systemctl is-active edgeemo").stdout.strip() == "active"
        status = t.ssh(
            "systemctl show -p StatusText --value edgeemo"
        ).stdout  # sent by the daemon: READY came
        assert "visit" in status and "fps" in status, status
        assert t.ssh("systemctl is-enabled edgeemo").stdout.strip() == "enabled"
        assert t.ssh("stat -c %U /var/lib/edgeemo").stdout.strip() == "edgeemo"
        # The emotion ensemble's networks were copied too, so the CPU reads most faces with one.
        journal = t.ssh("journalctl -u edgeemo --no-pager -o cat", timeout=60).stdout
        opened = "edgeemo_fer_int8.m1.tflite + edgeemo_fer_int8.m2.tflite, early exit at 0.50"
        assert opened in journal, journal[-3000:]


def test_second_run_changes_nothing(fleet: Fleet) -> None:
    pids = [main_pid(t) for t in fleet.targets]
    r = fleet.play()
    assert r.returncode == 0, r.stdout[-3000:]
    assert all(row["changed"] == 0 for host, row in recap(r.stdout).items() if host != "localhost"), r.stdout[
        -2000:
    ]
    assert [main_pid(t) for t in fleet.targets] == pids


def test_config_change_restarts_once(fleet: Fleet) -> None:
    t1, t2 = fleet.targets
    before = {t.name: (main_pid(t), _count_starts(t)) for t in fleet.targets}
    fleet.host_vars[t1.name]["edgeemo_config_extra"] = {"motion": {"max_skip_s": 3.0}}
    r = fleet.play()
    assert r.returncode == 0, r.stdout[-3000:]
    assert "max_skip_s: 3.0" in t1.ssh("cat /etc/edgeemo/edgeemo.yaml").stdout
    assert _count_starts(t1) == before[t1.name][1] + 1  # restarted exactly once
    assert main_pid(t1) != before[t1.name][0]
    assert (main_pid(t2), _count_starts(t2)) == before[t2.name]  # the other gateway untouched


def test_bad_config_fails_before_touching_the_service(fleet: Fleet) -> None:
    t1 = fleet.targets[0]
    pid, config = main_pid(t1), t1.ssh("cat /etc/edgeemo/edgeemo.yaml").stdout
    fleet.host_vars[t1.name]["edgeemo_config_extra"] = {
        "cameras": [{"name": "visit", "source": "x", "detect_fps": "fast"}]
    }
    r = fleet.play()
    assert r.returncode != 0
    assert "detect_fps" in r.stdout  # edgeemo check-config said what is wrong
    assert t1.ssh("cat /etc/edgeemo/edgeemo.yaml").stdout == config and main_pid(t1) == pid
    assert t1.ssh("systemctl is-active edgeemo").stdout.strip() == "active"
    del fleet.host_vars[t1.name]["edgeemo_config_extra"]


def test_broken_release_stops_after_the_first_gateway(fleet: Fleet) -> None:
    t1, t2 = fleet.targets
    broken = fleet.work / "broken.service"
    unit = (ROOT / "systemd" / "edgeemo.service").read_text()
    broken.write_text(
        unit.replace("--config /etc/edgeemo/edgeemo.yaml\n", "--config /etc/edgeemo/missing.yaml\n", 1)
    )
    t2_unit, t2_pid = t2.ssh("cat /etc/systemd/system/edgeemo.service").stdout, main_pid(t2)
    r = fleet.play(edgeemo_unit_src=str(broken))
    assert r.returncode != 0
    assert recap(r.stdout)[t1.name]["failed"] >= 1, r.stdout[-2000:]
    # The rollout stopped: gw2 was asked its platform (first play) but the rollout never reached it.
    rollout = r.stdout.split("PLAY [Install and run edgeemo on the gateways]")[1].split("PLAY RECAP")[0]
    assert f"[{t2.name}]" not in rollout, rollout[-2000:]
    assert t2.ssh("cat /etc/systemd/system/edgeemo.service").stdout == t2_unit and main_pid(t2) == t2_pid
    # Rolling back is running the good release again.
    assert fleet.play().returncode == 0
    assert t1.ssh("systemctl is-active edgeemo").stdout.strip() == "active"


def test_new_code_same_version_is_rolled_out_and_back(fleet: Fleet) -> None:
    # A release is the checkout's code, not its version number: a fix shipped without a
    # version bump must reach every gateway, and running the old checkout must bring it back.
    checkout = fleet.work / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", ".cache", "build", "demo", "__pycache__", "*.egg-info", ".*_cache"
        ),
    )
    init = checkout / "edgeemo" / "__init__.py"
    init.write_text(init.read_text() + 'DEPLOY_MARK = "same version, new code"\n')
    release = {
        "edgeemo_project_dir": checkout,
        "edgeemo_wheelhouse_src": ROOT / ".cache" / "wheelhouse",
        "edgeemo_controller_python": ROOT / ".venv" / "bin" / "python",
    }
    mark = '/opt/edgeemo/venv/bin/python -c \'import edgeemo; print(getattr(edgeemo, "DEPLOY_MARK", "-"))\''
    starts = {t.name: _count_starts(t) for t in fleet.targets}

    r = fleet.play(**release)
    assert r.returncode == 0, r.stdout[-3000:]
    for t in fleet.targets:
        assert t.ssh(mark).stdout.strip() == "same version, new code"
        assert _count_starts(t) == starts[t.name] + 1  # restarted once, onto the new code
        assert t.ssh("systemctl is-active edgeemo").stdout.strip() == "active"

    r = fleet.play()  # the original checkout: a rollback, same version again
    assert r.returncode == 0, r.stdout[-3000:]
    for t in fleet.targets:
        assert t.ssh(mark).stdout.strip() == "-"
        assert _count_starts(t) == starts[t.name] + 2
        assert t.ssh("systemctl is-active edgeemo").stdout.strip() == "active"


def _count_starts(t: Target) -> int:
    out = t.ssh("journalctl -u edgeemo --no-pager -o cat", timeout=60).stdout
    return sum(1 for line in out.splitlines() if line.startswith("Started edgeemo.service"))


def _installed(t: Target, project: str) -> str:
    """The version of `project` in the gateway's venv, or "-"."""
    code = (
        "import importlib.metadata as m\n"
        f"try: print(m.version({project!r}))\nexcept m.PackageNotFoundError: print('-')"
    )
    return t.ssh(f"{VENV_PY} -c {shlex.quote(code)}").stdout.strip()


def _onnxruntime_gpu_stand_in(work: Path) -> Path:
    """PyPI's onnxruntime wheel for the targets (Debian bookworm: x86_64, Python 3.11), the same
    version as this venv's, renamed onnxruntime_gpu and tagged linux_x86_64 as NVIDIA's are."""
    version = importlib.metadata.version("onnxruntime")
    dest = work / "pypi"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--implementation", "cp", "--python-version", "3.11",
         *[a for m in range(17, 37) for a in ("--platform", f"manylinux_2_{m}_x86_64")],
         "--platform", "manylinux2014_x86_64", "--dest", str(dest), f"onnxruntime=={version}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (src,) = dest.glob("onnxruntime-*.whl")
    return renamed_wheel(src, work / "given")


def test_onnx_backend_gets_the_given_onnxruntime_gpu_wheel_and_the_gpu_devices(fleet: Fleet) -> None:
    """backend onnx on gw1 with an onnxruntime_gpu wheel file given on the controller: the role
    installs that file (not PyPI's onnxruntime), the unit gets the Jetson GPU drop-in, the daemon
    runs its models on that ONNX Runtime (CPU provider: there is no GPU here, fallback: cpu).
    gw2 (backend cpu) gets neither. A rerun changes nothing; back to cpu removes the drop-in."""
    t1, t2 = fleet.targets
    wheel = _onnxruntime_gpu_stand_in(fleet.work)
    version = wheel.name.split("-")[1]
    t2_pid, t1_starts = main_pid(t2), _count_starts(t1)
    fleet.host_vars[t1.name]["edgeemo_config_extra"] = {"inference": {"backend": "onnx"}}
    fleet.host_vars[t1.name]["edgeemo_onnxruntime_wheel"] = str(wheel)

    r = fleet.play()
    assert r.returncode == 0, r.stdout[-3000:]
    assert _installed(t1, "onnxruntime-gpu") == version and _installed(t1, "onnxruntime") == "-"
    # pip installed the file the controller was given, copied into the gateway's wheelhouse.
    dist_info = f"/opt/edgeemo/venv/lib/python3.11/site-packages/onnxruntime_gpu-{version}.dist-info"
    origin = t1.ssh(f"cat {dist_info}/direct_url.json").stdout
    assert f"/opt/edgeemo/wheelhouse/{wheel.name}" in origin, origin
    assert "backend: onnx" in t1.ssh("cat /etc/edgeemo/edgeemo.yaml").stdout
    assert t1.ssh("systemctl is-active edgeemo").stdout.strip() == "active"
    assert _count_starts(t1) == t1_starts + 1
    allow = t1.ssh("systemctl show -p DeviceAllow --value edgeemo").stdout
    assert "/dev/nvmap rw" in allow and "/dev/nvhost-ctrl-gpu rw" in allow and "char-video4linux rw" in allow
    journal = t1.ssh("journalctl -u edgeemo --no-pager -o cat", timeout=60).stdout
    runs = r"edgeemo_fer_int8\.onnx runs on onnx \(CPUExecutionProvider\)"
    assert re.search(runs, journal), journal[-3000:]
    # gw2 (backend cpu): no GPU devices, no ONNX Runtime, not restarted.
    assert t2.ssh(f"test -e {DROPIN}", check=False).returncode != 0
    assert "/dev/nv" not in t2.ssh("systemctl show -p DeviceAllow --value edgeemo").stdout
    assert _installed(t2, "onnxruntime-gpu") == "-" and _installed(t2, "onnxruntime") == "-"
    assert main_pid(t2) == t2_pid

    again = fleet.play()
    assert again.returncode == 0, again.stdout[-3000:]
    assert all(row["changed"] == 0 for h, row in recap(again.stdout).items() if h != "localhost"), (
        again.stdout[-2000:]
    )

    del (
        fleet.host_vars[t1.name]["edgeemo_config_extra"],
        fleet.host_vars[t1.name]["edgeemo_onnxruntime_wheel"],
    )
    back = fleet.play()
    assert back.returncode == 0, back.stdout[-3000:]
    assert t1.ssh(f"test -e {DROPIN}", check=False).returncode != 0
    assert "/dev/nv" not in t1.ssh("systemctl show -p DeviceAllow --value edgeemo").stdout
    assert "backend" not in t1.ssh("cat /etc/edgeemo/edgeemo.yaml").stdout
    assert t1.ssh("systemctl is-active edgeemo").stdout.strip() == "active"
    assert _count_starts(t1) == t1_starts + 2
