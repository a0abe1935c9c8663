#!/usr/bin/env bash
# Creates (or reuses) the project's own virtual environment with the verified package set.
# auto-sklearn 0.15 cannot be installed on Python 3.11 with a plain `pip install`: scikit-learn 0.24.2 has no
# wheel for 3.11 and must be compiled against old numpy/Cython without build isolation (see README, "Install").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CLASSIE_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
constraints="$root/constraints.txt"
stamp="$venv/.classie-installed"
wanted="$(cat "$constraints" "$root/pyproject.toml" "$0" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi

command -v "$python" >/dev/null || { echo "setup: $python not found; install Python 3.11 or set PYTHON=" >&2; exit 1; }
echo "setup: building $venv (first time on a machine: ~8 minutes, scikit-learn and auto-sklearn compile)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
export PATH="$venv/bin:$PATH"   # pyrfr's build needs the swig that PyPI's `swig` puts in the venv's bin/

"${pip[@]}" install -q -c "$constraints" --upgrade pip wheel setuptools
"${pip[@]}" install -q -c "$constraints" numpy scipy Cython swig
# Old build tooling in the venv and no isolation: isolated builds pick the newest setuptools/Cython and break.
"${pip[@]}" install -q -c "$constraints" --no-build-isolation scikit-learn
"${pip[@]}" install -q -c "$constraints" --no-build-isolation auto-sklearn
"${pip[@]}" install -q -c "$constraints" -e "$root[test]"
echo "$wanted" > "$stamp"
echo "setup: ready ($venv)" >&2
