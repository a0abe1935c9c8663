#!/usr/bin/env bash
# Label Studio's own virtual environment, installed from its lock: every package at an exact version, each file
# checked against its hash (locks/label-studio.txt; scripts/lock.sh resolves it again). Label Studio needs numpy>=2.2
# and cannot share the service's .venv. The tests (tests/label_studio_server.py) and the Label Studio image of the
# Docker trial install it with this script, so they run the same Label Studio.
#   scripts/setup-label-studio.sh [VENV]          create VENV, or reuse it when it was built from the current lock
#   scripts/setup-label-studio.sh --check [VENV]  exit 0 if VENV was built from the current lock, else 1
#   scripts/setup-label-studio.sh --stamp         print the stamp of the current lock (its hash and this script's)
# VENV defaults to $CLASSIE_LS_VENV, else .ls-venv in the project's root. A VENV built from another lock is
# emptied and built again, never updated in place (a package the new lock dropped would stay behind).
set -euo pipefail
mode=install
case "${1:-}" in --check|--stamp) mode="${1#--}"; shift ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${CLASSIE_LS_VENV:-$root/.ls-venv}}"
build_lock="$root/locks/build.txt"
lock="$root/locks/label-studio.txt"
stamp_file="$venv/.classie-ls-lock"
wanted="$(cat "$build_lock" "$lock" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
# The stamp is written last, after a whole install: it proves one.
current() { [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$wanted" ]; }

case "$mode" in
  stamp) echo "$wanted"; exit 0 ;;
  check) current; exit ;;
esac
current && exit 0

python="${PYTHON:-$(command -v python3.11 || command -v python3 || echo python3.11)}"
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || {
  echo "setup-label-studio: $python is not Python 3.11 (the lock is resolved for it); install it or set PYTHON=" >&2
  exit 1
}
if [ -f "$venv/pyvenv.cfg" ]; then
  # Built from another lock (or half built): start again. The tests' install lock file stays, it is held.
  echo "setup-label-studio: $venv was built from another lock; building it again" >&2
  find "$venv" -mindepth 1 -maxdepth 1 ! -name '.classie-ls-install.lock' -exec rm -rf {} +
elif [ -d "$venv" ] && [ -n "$(ls -A "$venv" | grep -v -x -e '.classie-ls-install.lock' -e '.gitignore' || true)" ]; then
  echo "setup-label-studio: $venv holds files but no virtual environment; give an empty or new folder" >&2
  exit 1
fi
echo "setup-label-studio: installing Label Studio into $venv from locks/label-studio.txt (~2 minutes)" >&2
mkdir -p "$venv"
printf '*\n' > "$venv/.gitignore"
log="$venv/pip-install.log"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
{
  # First the build tools, then everything else built with them: an isolated build would take the newest setuptools.
  "${pip[@]}" install --require-hashes --no-deps -r "$build_lock" &&
    "${pip[@]}" install --require-hashes --no-build-isolation -r "$lock" &&
    "${pip[@]}" check
} > "$log" 2>&1 || {
  tail -n 40 "$log" >&2
  echo "setup-label-studio: failed; the whole output is in $log" >&2
  exit 1
}
echo "$wanted" > "$stamp_file"
echo "setup-label-studio: ready ($venv/bin/label-studio)" >&2
