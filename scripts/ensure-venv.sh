#!/usr/bin/env bash
# Makes a venv with a working pip, or makes it again when it has none.
# Usage: ensure-venv.sh PYTHON DIR
#
# A venv made while python3.X-venv was missing (Debian's `python3 -m venv` then stops with
# "ensurepip is not available" after creating DIR/bin/python) or whose Python went away with an
# upgrade has no usable pip; it is removed and made again, as venv's own message advises.
set -euo pipefail
python=${1:?usage: ensure-venv.sh PYTHON DIR}
dir=${2:?usage: ensure-venv.sh PYTHON DIR}

if [ -x "$dir/bin/python" ] && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
  exit 0
fi
if [ -e "$dir" ]; then
  echo "ensure-venv: $dir has no working pip (made before python3-venv was installed?); making it again"
  rm -rf "$dir"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if "$python" -m venv "$dir" >"$log" 2>&1 && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
  exit 0
fi
rm -rf "$dir"  # never leave a half-made venv behind for the next make to trip over
if ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
  pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "ensure-venv: cannot make $dir: $python has no ensurepip (Debian/Ubuntu package python$pyver-venv)." >&2
  echo "ensure-venv: as root: apt-get install python$pyver-venv; then run make again." >&2
else
  echo "ensure-venv: '$python -m venv $dir' failed:" >&2
  cat "$log" >&2
fi
exit 1
