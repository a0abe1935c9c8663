#!/usr/bin/env bash
# Creates (or reuses) the project's own virtual environment with the verified package set.
# auto-sklearn 0.15 cannot be installed on Python 3.11 with a plain `pip install`: scikit-learn 0.24.2 has no
# wheel for 3.11 and must be compiled against old numpy/Cython without build isolation (see README, "Install").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CLASSIE_VENV:-$root/.venv}"
python="${PYTHON:-$(command -v python3.11 || command -v python3 || echo python3.11)}"
constraints="$root/constraints.txt"
stamp="$venv/.classie-installed"
wanted="$(cat "$constraints" "$root/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi

"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || {
  echo "setup: $python is not Python 3.11 (auto-sklearn 0.15 is verified there only); install it or set PYTHON=" >&2
  exit 1
}
echo "setup: building $venv (first time on a machine: ~8 minutes, scikit-learn and auto-sklearn compile)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
export PATH="$venv/bin:$PATH"   # pyrfr's build needs the swig that PyPI's `swig` puts in the venv's bin/
log="$venv/setup.log"
: > "$log"
step() {  # run one install step; its output goes to the log, shown only if the step fails
  echo "setup: $1" >&2
  shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: failed; the whole output is in $log" >&2
    exit 1
  fi
}

step "build tools" "${pip[@]}" install -c "$constraints" --upgrade pip wheel setuptools
step "numpy, scipy, Cython, swig" "${pip[@]}" install -c "$constraints" numpy scipy Cython swig
# Old build tooling in the venv and no isolation: isolated builds pick the newest setuptools/Cython and break.
step "scikit-learn 0.24.2 (compiles the first time: ~5 min)" \
  "${pip[@]}" install -c "$constraints" --no-build-isolation scikit-learn
step "auto-sklearn 0.15.0 (compiles the first time: ~2 min)" \
  "${pip[@]}" install -c "$constraints" --no-build-isolation auto-sklearn
step "classie-automl and its test tools" "${pip[@]}" install -c "$constraints" -e "$root[test]"
echo "$wanted" > "$stamp"
echo "setup: ready ($venv)" >&2
