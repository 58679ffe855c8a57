#!/usr/bin/env bash
# Installs the Debian packages the real components need: a Mosquitto broker, FFmpeg,
# GStreamer's RTSP server (tests stream a clip over RTSP) and systemd's analysers.
# Idempotent and quick when everything is present. Usage: install-system-deps.sh [test|demo|deploy|arm64]
set -euo pipefail
profile=${1:-test}
# libsystemd-dev, pkg-config and gcc: systemd-python (sd_notify) builds from source in the venv.
pkgs=(mosquitto mosquitto-clients libsystemd-dev pkg-config gcc)
if [ "$profile" = test ]; then
  pkgs+=(ffmpeg gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base
         gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
         gstreamer1.0-libav python3-gi systemd)
fi
if [ "$profile" = deploy ]; then
  # Real systemd hosts for the Ansible tests: debootstrap roots booted by systemd-nspawn.
  pkgs+=(debootstrap systemd-container openssh-client iproute2)
fi
if [ "$profile" = arm64 ]; then
  # An arm64 Debian root run under qemu-user (make check-arm64).
  pkgs+=(debootstrap qemu-user-static binfmt-support)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: not a Debian system; please install: ${missing[*]}" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "install-system-deps: need root to install ${missing[*]}; tests that need them will skip" >&2
    exit 0
  fi
fi
echo "install-system-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts mosquitto as a service where it can; the tests and the demo run their own.
