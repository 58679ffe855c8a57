"""The controller builds a wheelhouse for a gateway whose CPU it does not share (make test-deploy).

An x86 controller rolling out to a Raspberry Pi fleet is the common case. There is no arm64
host here, so the gateway's platform is given in the inventory (as an operator does for a
gateway that is offline at build time) and the check is that pip, told it is that Pi, can
install edgeemo from the wheelhouse alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.targets import ROOT

pytestmark = pytest.mark.deploy
PLAYBOOK_BIN = Path(
    os.environ.get("ANSIBLE_PLAYBOOK", ROOT / ".venv-deploy" / "bin" / "ansible-playbook")
).absolute()
PI5 = {"machine": "aarch64", "python": "3.11", "glibc": "2.36"}  # Raspberry Pi OS Bookworm, 64-bit
JETSON = {"machine": "aarch64", "python": "3.10", "glibc": "2.35"}  # JetPack 6 (Ubuntu 22.04)


def _play(inventory: Path, wheelhouse: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(PLAYBOOK_BIN), "-i", str(inventory), "site.yml", "--tags", "wheelhouse",
         "-e", f"edgeemo_wheelhouse_src={wheelhouse}"],
        cwd=ROOT / "ansible", capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip


@pytest.mark.parametrize("platform", [PI5, JETSON], ids=["pi5", "jetson"])
def test_arm64_gateway_gets_an_arm64_wheelhouse(platform: dict, tmp_path: Path) -> None:
    if not PLAYBOOK_BIN.exists():
        pytest.skip(f"{PLAYBOOK_BIN} missing: `make test-deploy` installs ansible-core")
    inventory = tmp_path / "hosts.yml"
    # 192.0.2.1 is TEST-NET: nothing must connect to the gateway to build its wheelhouse.
    gw = {"ansible_host": "192.0.2.1", "edgeemo_platform": platform}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"edgeemo_gateways": {"hosts": {"gw": gw}}}}}))
    wheelhouse = tmp_path / "wheelhouse"

    r = _play(inventory, wheelhouse)
    assert r.returncode == 0, r.stdout[-3000:]
    glibc_minor = int(platform["glibc"].split(".")[1])
    folder = wheelhouse / f"aarch64-cp{platform['python'].replace('.', '')}-glibc{platform['glibc']}"
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    assert any(w.startswith("edgeemo-") for w in wheels), wheels
    for name in ("numpy", "opencv_python_headless", "ai_edge_litert", "pydantic_core", "pyyaml"):
        assert any(w.lower().startswith(name) and "aarch64" in w for w in wheels), (name, wheels)
    assert not [w for w in wheels if "x86_64" in w], wheels

    # pip, told it is that gateway, installs edgeemo from that folder alone (no index, no other links).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    check = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
         "--find-links", str(folder), "--only-binary=:all:", "--implementation", "cp",
         "--python-version", platform["python"],
         *[a for m in range(17, glibc_minor + 1) for a in ("--platform", f"manylinux_2_{m}_aarch64")],
         "--platform", "manylinux2014_aarch64", "--target", str(tmp_path / "t"), "edgeemo"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "Would install" in check.stdout and "ai-edge-litert" in check.stdout

    # The second run downloads nothing and changes nothing.
    again = _play(inventory, wheelhouse)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-2000:]
