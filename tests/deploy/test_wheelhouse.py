"""The controller builds a wheelhouse for a gateway whose CPU it does not share (make test-deploy).

An x86 controller rolling out to a Raspberry Pi fleet is the common case. There is no arm64
host here, so the gateway's platform is given in the inventory (as an operator does for a
gateway that is offline at build time) and the check is that pip, told it is that Pi, can
install edgeemo from the wheelhouse alone. The same for Jetsons with backend onnx, given
NVIDIA's onnxruntime-gpu wheel as a file, a URL or an index (stand-in wheels: tests/deploy/wheels.py).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.targets import ROOT
from tests.deploy.wheels import empty_wheel

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


def _pip_as(platform: dict, folder: Path, target: Path, *requirements: str) -> subprocess.CompletedProcess:
    """pip, told it is that gateway, installing from `folder` alone (no index, no other links)."""
    glibc_minor = int(platform["glibc"].split(".")[1])
    machine = platform["machine"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
         "--find-links", str(folder), "--only-binary=:all:", "--implementation", "cp",
         "--python-version", platform["python"], "--platform", f"linux_{machine}",
         *[a for m in range(17, glibc_minor + 1) for a in ("--platform", f"manylinux_2_{m}_{machine}")],
         "--platform", f"manylinux2014_{machine}", "--target", str(target), *requirements],
        capture_output=True, text=True, env=env, timeout=300,
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
    folder = wheelhouse / f"aarch64-cp{platform['python'].replace('.', '')}-glibc{platform['glibc']}"
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    assert any(w.startswith("edgeemo-") for w in wheels), wheels
    for name in ("numpy", "opencv_python_headless", "ai_edge_litert", "pydantic_core", "pyyaml"):
        assert any(w.lower().startswith(name) and "aarch64" in w for w in wheels), (name, wheels)
    assert not [w for w in wheels if "x86_64" in w], wheels

    # pip, told it is that gateway, installs edgeemo from that folder alone (no index, no other links).
    check = _pip_as(platform, folder, tmp_path / "t", "edgeemo")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "Would install" in check.stdout and "ai-edge-litert" in check.stdout

    # The second run downloads nothing and changes nothing.
    again = _play(inventory, wheelhouse)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-2000:]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback: a wheel's URL, and a package index (PEP 503 pages
    are what http.server's folder listings are: one link per file)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_jetson_gateways_get_the_onnxruntime_gpu_they_are_given(tmp_path: Path, served: tuple) -> None:
    """backend onnx on three JetPack 6 gateways, NVIDIA's wheel given three ways (a file on the
    controller, a URL, an index), and a Pi 5 with backend onnx and nothing given (PyPI's CPU
    build). The wheels are stand-ins named and tagged as NVIDIA's (see wheels.py)."""
    if not PLAYBOOK_BIN.exists():
        pytest.skip(f"{PLAYBOOK_BIN} missing: `make test-deploy` installs ansible-core")
    root, url = served
    given = empty_wheel(tmp_path / "given", "1.20.0", "3.10", "aarch64")
    at_url = empty_wheel(root / "files", "1.20.1", "3.10", "aarch64")
    empty_wheel(root / "simple" / "onnxruntime-gpu", "1.20.2", "3.10", "aarch64")
    empty_wheel(root / "simple" / "onnxruntime-gpu", "1.20.3", "3.10", "aarch64")  # newer, not asked for

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    onnx = {"edgeemo_config_extra": {"inference": {"backend": "onnx"}}}
    hosts = {
        "jp-file": {**onnx, "edgeemo_onnxruntime_wheel": str(given),
                    "edgeemo_onnxruntime_wheel_sha256": sha(given)},
        "jp-url": {"edgeemo_backend": "onnx", "edgeemo_onnxruntime_wheel": f"{url}/files/{at_url.name}",
                   "edgeemo_onnxruntime_wheel_sha256": sha(at_url)},
        "jp-index": {**onnx, "edgeemo_onnxruntime_index_url": f"{url}/simple",
                     "edgeemo_onnxruntime_package": "onnxruntime-gpu==1.20.2"},
        "jp-cpu": {"edgeemo_platform": JETSON},  # backend cpu: no ONNX Runtime at all
        "pi": {**onnx, "edgeemo_platform": PI5},
    }  # fmt: skip
    for v in hosts.values():
        v.setdefault("edgeemo_platform", JETSON)
        v["ansible_host"] = "192.0.2.1"  # TEST-NET: nothing may connect to a gateway here
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"edgeemo_gateways": {"hosts": hosts}}}}))
    wheelhouse = tmp_path / "wheelhouse"

    r = _play(inventory, wheelhouse)
    assert r.returncode == 0, r.stdout[-3000:]
    jetson, pi = wheelhouse / "aarch64-cp310-glibc2.35", wheelhouse / "aarch64-cp311-glibc2.36"
    wheels = sorted(p.name for p in jetson.glob("*.whl"))
    gpu = [w for w in wheels if w.startswith("onnxruntime_gpu-")]
    assert gpu == [f"onnxruntime_gpu-1.20.{n}-cp310-cp310-linux_aarch64.whl" for n in (0, 1, 2)], wheels
    assert (jetson / given.name).read_bytes() == given.read_bytes()
    assert not [w for w in wheels if w.startswith("onnxruntime-")], wheels  # no PyPI CPU build
    for dep in ("onnx-", "protobuf-", "sympy-", "coloredlogs-", "flatbuffers-"):
        assert any(w.startswith(dep) for w in wheels), (dep, wheels)
    assert not [w for w in wheels if "x86_64" in w], wheels
    pi_wheels = sorted(p.name for p in pi.glob("*.whl"))
    assert any(w.startswith("onnxruntime-") and "aarch64" in w for w in pi_wheels), pi_wheels
    assert not [w for w in pi_wheels if w.startswith("onnxruntime_gpu")], pi_wheels

    # What the role installs on each Jetson resolves as that Jetson from its wheelhouse alone.
    for requirement, version in ((str(jetson / given.name), "1.20.0"), ("onnxruntime-gpu==1.20.2", "1.20.2")):
        check = _pip_as(JETSON, jetson, tmp_path / "t", "edgeemo", requirement, "onnx>=1.15")
        assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
        assert f"onnxruntime-gpu-{version}" in check.stdout and "onnx-" in check.stdout, check.stdout
    check = _pip_as(PI5, pi, tmp_path / "t", "edgeemo", "onnxruntime>=1.17", "onnx>=1.15")
    assert check.returncode == 0 and "onnxruntime-" in check.stdout, check.stdout[-2000:] + check.stderr

    again = _play(inventory, wheelhouse)  # nothing new: nothing fetched, nothing changed
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-2000:]

    # A wheel that is not the one whose sha256 was given stops the play on the controller.
    hosts["jp-file"]["edgeemo_onnxruntime_wheel_sha256"] = "0" * 64
    inventory.write_text(yaml.safe_dump({"all": {"children": {"edgeemo_gateways": {"hosts": hosts}}}}))
    bad = _play(inventory, wheelhouse)
    assert bad.returncode != 0
    assert "does not match edgeemo_onnxruntime_wheel_sha256" in bad.stdout, bad.stdout[-2000:]
