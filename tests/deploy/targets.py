"""Real systemd hosts for the Ansible tests: Debian bookworm roots booted with systemd-nspawn.

Each target gets its own network namespace (created here, removed afterwards) joined to the
host by a veth pair, and is reached over SSH as root with a throwaway key. The base root is
made once with debootstrap and cached in .cache/deploy/; every test session boots fresh copies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "deploy"
BASE = CACHE / "bookworm-base"
KEY = CACHE / "id_ed25519"
PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,python3-apt,sudo,iproute2"
SSH_OPTS = [
    "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
]  # fmt: skip


def missing_capability() -> str | None:
    """Why real targets cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and systemd-nspawn)"
    for tool in ("debootstrap", "systemd-nspawn", "ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make test-deploy installs it with apt)"
    return None


def base_root() -> Path:
    """The cached bookworm root with sshd and our key; debootstrap (~1.5 min) when absent."""
    CACHE.mkdir(parents=True, exist_ok=True)
    if not KEY.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(KEY)], check=True)
    stamp = BASE / ".edgeemo-ready"
    if not stamp.exists():
        shutil.rmtree(BASE, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(BASE),
             "http://deb.debian.org/debian"],
            check=True, capture_output=True,
        )  # fmt: skip
        ssh_dir = BASE / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(f"{KEY}.pub", ssh_dir / "authorized_keys")
        stamp.touch()
    return BASE


@dataclass
class Target:
    name: str
    index: int
    root: Path
    proc: subprocess.Popen | None = None

    @property
    def netns(self) -> str:
        return f"edgeemo-{self.name}"

    @property
    def host_ip(self) -> str:  # the test machine's end of the veth pair
        return f"10.231.{self.index}.1"

    @property
    def ip(self) -> str:
        return f"10.231.{self.index}.2"

    def ssh(self, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", *SSH_OPTS, f"root@{self.ip}", command],
            capture_output=True, text=True, check=check, timeout=timeout,
        )  # fmt: skip

    def copy_in(self, local: Path, remote: str) -> None:
        subprocess.run(
            ["scp", "-q", *SSH_OPTS, str(local), f"root@{self.ip}:{remote}"], check=True, timeout=60
        )

    def start(self, base: Path) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["cp", "-a", str(base), str(self.root)], check=True)
        veth_host, veth_target = f"veh-{self.name}", f"vet-{self.name}"
        self._ip("netns", "add", self.netns)
        self._ip("link", "add", veth_host, "type", "veth", "peer", "name", veth_target)
        self._ip("link", "set", veth_target, "netns", self.netns)
        self._ip("addr", "add", f"{self.host_ip}/24", "dev", veth_host)
        self._ip("link", "set", veth_host, "up")
        for args in (("addr", "add", f"{self.ip}/24", "dev", veth_target), ("link", "set", veth_target, "up"),
                     ("link", "set", "lo", "up")):  # fmt: skip
            self._ip("netns", "exec", self.netns, "ip", *args)
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "-b", "--register=no", "--keep-unit", "--console=pipe",
             f"--network-namespace-path=/run/netns/{self.netns}", f"--hostname={self.name}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self.ssh("systemctl is-system-running --wait", check=False, timeout=30)
            if r.stdout.strip() in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"target {self.name} did not boot within 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # nspawn asks systemd inside to power off
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run(["ip", "link", "del", f"veh-{self.name}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)
