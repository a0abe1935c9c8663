#!/usr/bin/env bash
# Resolves locks again from their inputs: every package at an exact version, with the hashes of its files.
#   scripts/lock.sh                      all of them
#   scripts/lock.sh label-studio [...]   locks/label-studio.txt from locks/label-studio.in (likewise uv, build)
#   scripts/lock.sh --upgrade [NAME...]  the newest versions the inputs allow; without it, a package keeps the version
#                                        its lock holds unless the inputs exclude it (a change stays small)
# Locks are for CPython 3.11 on x86-64 Linux, where the project runs. The resolver, uv, is installed from locks/uv.txt
# into a throwaway environment. A new Label Studio lock is then installed (scripts/setup-label-studio.sh) into another
# throwaway environment and the server started once (tests/label_studio_server.py --check, with the service's .venv):
# a lock that does not install or start is put back as it was. Then run the tests: ./dev test
# The service's own environment is pinned by constraints.txt (see its first line), not by this script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
upgrade=()
[ "${1:-}" = "--upgrade" ] && { upgrade=(--upgrade); shift; }
[ "$#" -gt 0 ] && names=("$@") || names=(uv build label-studio)
python="${PYTHON:-$(command -v python3.11 || echo python3.11)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for name in "${names[@]}"; do
  [ -f "locks/$name.in" ] || { echo "lock: no locks/$name.in (the inputs of locks/$name.txt)" >&2; exit 2; }
  [ -f "locks/$name.txt" ] && cp "locks/$name.txt" "$work/$name.txt.before"
done

"$python" -m venv "$work/uv"
"$work/uv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r locks/uv.txt
for name in "${names[@]}"; do
  echo "lock: resolving locks/$name.in" >&2
  "$work/uv/bin/uv" pip compile "locks/$name.in" --quiet --generate-hashes "${upgrade[@]}" \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "scripts/lock.sh $name" -o "locks/$name.txt"
done

case " ${names[*]} " in
  *" label-studio "*|*" build "*)
    echo "lock: installing and starting the new Label Studio lock in a throwaway environment" >&2
    if ! bash scripts/setup-label-studio.sh "$work/ls" ||
       ! "${CLASSIE_VENV:-$root/.venv}/bin/python" tests/label_studio_server.py --check "$work/ls"; then
      for name in "${names[@]}"; do
        if [ -f "$work/$name.txt.before" ]; then cp "$work/$name.txt.before" "locks/$name.txt"; fi
      done
      echo "lock: the new lock did not install or start; the old one is back (git diff locks/ shows nothing)" >&2
      exit 1
    fi ;;
esac
echo "lock: done; git diff locks/ shows what moved" >&2
