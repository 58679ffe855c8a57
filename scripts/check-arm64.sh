#!/usr/bin/env bash
# make check-arm64: the fleet's arm64 wheelhouse, installed and run on arm64 (emulated).
#
# Builds the wheelhouse for a Raspberry Pi (aarch64, Python 3.11, glibc 2.36) with the real
# playbook (`--tags wheelhouse`), installs edgeemo from it alone into a venv inside a Debian
# bookworm arm64 root run under qemu-user, runs `edgeemo eval` there on FER2013 public-test faces
# and checks the report equals the x86 one. Needs root (chroot, binfmt) and ../shared.
# 6.5 minutes the first time on the 2-core dev VM (debootstrap under emulation), 4 after.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=${ARM64_ROOT:-.cache/arm64/root}
N=${ARM64_FACES:-400}
DATA=${FER2013_DIR:-../shared/data/fer2013}
[[ -f "$DATA/publictest.npz" ]] || { echo "check-arm64: $DATA/publictest.npz not found; set FER2013_DIR" >&2; exit 2; }
[[ "$(id -u)" -eq 0 ]] || { echo "check-arm64: needs root (chroot, binfmt_misc)" >&2; exit 2; }

./scripts/install-system-deps.sh arm64
[[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || { echo "check-arm64: qemu-aarch64 binfmt is not registered" >&2; exit 1; }

if [[ ! -f "$ROOT_DIR/.edgeemo-ready" ]]; then
    echo "check-arm64: debootstrap bookworm arm64 into $ROOT_DIR (several minutes under emulation)"
    rm -rf "$ROOT_DIR" && mkdir -p "$(dirname "$ROOT_DIR")"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv bookworm "$ROOT_DIR" \
        http://deb.debian.org/debian >"$ROOT_DIR.log" 2>&1 || { echo "check-arm64: debootstrap failed; see $ROOT_DIR.log" >&2; exit 1; }
    touch "$ROOT_DIR/.edgeemo-ready"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/hosts.yml" <<YAML
all:
  children:
    edgeemo_gateways:
      hosts:
        pi5: {ansible_host: 192.0.2.1, edgeemo_platform: {machine: aarch64, python: "3.11", glibc: "2.36"}}
YAML
(cd ansible && ANSIBLE_CONFIG=ansible.cfg ../.venv-deploy/bin/ansible-playbook -i "$work/hosts.yml" site.yml \
    --tags wheelhouse -e "edgeemo_wheelhouse_src=$PWD/../.cache/wheelhouse" >"$work/play.log") \
    || { cat "$work/play.log" >&2; exit 1; }

rm -rf "$ROOT_DIR/check" && mkdir -p "$ROOT_DIR/check"
cp -r .cache/wheelhouse/aarch64-cp311-glibc2.36 "$ROOT_DIR/check/wheelhouse"
cp -r models "$ROOT_DIR/check/models"
.venv/bin/python -c "import numpy as np, sys; d = np.load(sys.argv[1]); n = int(sys.argv[3]);
np.savez(sys.argv[2], images=d['images'][:n], labels=d['labels'][:n])" "$DATA/publictest.npz" "$ROOT_DIR/check/faces.npz" "$N"

in_root() { chroot "$ROOT_DIR" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root "$@"; }
echo "check-arm64: $(in_root uname -m), $(in_root python3 --version); installing from the wheelhouse only"
in_root sh -c 'rm -rf /opt/venv && python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index \
    --find-links /check/wheelhouse /check/wheelhouse/edgeemo-*.whl'
eval_args=(eval --data faces.npz --model edgeemo_fer_int8 --models-dir models --json --threads 1)
# XNNPACK's cpuinfo cannot read /sys in the chroot; it says so on stderr and carries on.
in_root sh -c "cd /check && /opt/venv/bin/edgeemo ${eval_args[*]}" 2>/dev/null >"$work/arm64.json"
(cd "$ROOT_DIR/check" && "$OLDPWD/.venv/bin/edgeemo" "${eval_args[@]}") >"$work/x86.json"
.venv/bin/python - "$work/x86.json" "$work/arm64.json" <<'PY'
import json, sys
x86, arm = (json.load(open(p)) for p in sys.argv[1:])
keys = ("n", "accuracy", "macro_f1", "per_class_recall", "confusion")
same = all(x86[k] == arm[k] for k in keys)
print(f"check-arm64: {arm['n']} faces, accuracy {arm['accuracy']} on aarch64 vs {x86['accuracy']} on x86_64;",
      "same confusion matrix" if same else "REPORTS DIFFER")
sys.exit(0 if same else 1)
PY
