#!/usr/bin/env bash
# Installs the Debian packages that `make` needs, before it makes the venv.
# Usage: install-system-deps.sh [venv|demo|test|deploy|arm64|fresh]   (default: test)
#   venv    what `python3 -m venv` and the dev install need: python3.X-venv (ensurepip),
#           and python3.X-dev, gcc, pkg-config, libsystemd-dev to build systemd-python
#   demo    venv + a Mosquitto broker (without it the demo uses the pure-Python amqtt)
#   test    demo + FFmpeg, GStreamer's RTSP server (tests stream a clip over RTSP), systemd's analysers,
#           Chromium and its driver (the web face's pages are tested in a real headless browser)
#   deploy, arm64, fresh: test-deploy, check-arm64, test-fresh (debootstrap, nspawn, qemu)
# Idempotent and quick when everything is present. Not root and no password-less sudo: it says
# what is missing and what that costs, and exits 0 (the venv step stops with a clear message if
# it cannot be made; tests that need a missing part skip). Not Debian/Ubuntu: it lists the packages.
set -euo pipefail
profile=${1:-test}
python=${PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# python3.X-venv, not python3-venv: it must match the Python that makes the venv, which is
# what `python3 -m venv`'s own error message asks for too. A Python not from apt (pyenv, a
# build in /usr/local) has its own ensurepip and headers.
if [ "$("$python" -c 'import sys; print(sys.base_prefix)')" = /usr ]; then
  venv_pkgs=("python$pyver-venv") py_dev=("python$pyver-dev")
else
  venv_pkgs=() py_dev=()
fi
# systemd-python (sd_notify through libsystemd) builds from source in the venv.
build_pkgs=("${py_dev[@]}" gcc pkg-config libsystemd-dev)
pkgs=("${venv_pkgs[@]}" "${build_pkgs[@]}")
case "$profile" in
  venv) ;;
  demo) pkgs+=(mosquitto mosquitto-clients) ;;
  test) pkgs+=(mosquitto mosquitto-clients ffmpeg gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
               gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
               gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi systemd chromium chromium-driver) ;;
  # Real systemd hosts for the Ansible tests: debootstrap roots booted by systemd-nspawn.
  deploy) pkgs+=(mosquitto mosquitto-clients debootstrap systemd-container openssh-client iproute2) ;;
  # An arm64 Debian root run under qemu-user (make check-arm64).
  arm64) pkgs+=(mosquitto mosquitto-clients debootstrap qemu-user-static binfmt-support) ;;
  # A minimal Debian root for make test-fresh.
  fresh) pkgs=(debootstrap systemd-container) ;;
  *) echo "install-system-deps: unknown profile $profile (venv|demo|test|deploy|arm64|fresh)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: not a Debian/Ubuntu system; please install the equivalents of: ${missing[*]}" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "install-system-deps: not root and no password-less sudo, so these are not installed: ${missing[*]}" >&2
    for p in "${missing[@]}"; do
      case " ${venv_pkgs[*]} " in *" $p "*)
        echo "  $p: the venv cannot be made without it; as root: apt-get install $p" >&2 ;;
      esac
    done
    for p in "${missing[@]}"; do
      case " ${build_pkgs[*]} " in *" $p "*)
        echo "  ${build_pkgs[*]}: systemd-python is not built; edgeemo sends sd_notify's datagram itself" >&2
        break ;;
      esac
    done
    if [ "$profile" != venv ]; then
      echo "  the rest: tests that need them skip and say why; the demo uses the amqtt broker" >&2
    fi
    exit 0
  fi
fi
echo "install-system-deps: installing ${missing[*]}"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts mosquitto as a service where it can; the tests and the demo run their own.
