#!/usr/bin/env bash
# Creates (or reuses) the project's own virtual environment with the verified package set.
# pip alone cannot install auto-sklearn 0.15 on Python 3.11: scikit-learn 0.24.2 has no
# wheel for 3.11 and must be compiled against old numpy/Cython without build isolation (see README, "Install").
# The Docker image is built by this same script (docker/Dockerfile):
#   --deps-only          everything but the project itself (an image layer that survives code changes)
#   CLASSIE_EXTRAS=...   the project's optional extras to install ("test" by default; "" in the image)
set -euo pipefail
deps_only=false
[ "${1:-}" = "--deps-only" ] && deps_only=true
extras="${CLASSIE_EXTRAS-test}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CLASSIE_VENV:-$root/.venv}"
python="${PYTHON:-$(command -v python3.11 || command -v python3 || echo python3.11)}"
constraints="$root/constraints.txt"
# The build tools of the isolated builds pip still makes (cuid, the project itself): pinned like everything else.
build_constraints="$root/locks/build.txt"
stamp="$venv/.classie-installed"
wanted="$( (cat "$constraints" "$build_constraints" "$root/pyproject.toml" "${BASH_SOURCE[0]}"; echo "extras=$extras") |
           sha256sum | cut -d' ' -f1)"

if [ "$deps_only" = false ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
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
# The project's own dependencies (and extras) from pyproject.toml, so that --deps-only leaves nothing but the project.
requirements="$venv/classie-requirements.txt"
"$venv/bin/python" - "$root/pyproject.toml" "$extras" > "$requirements" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
wanted = list(project["dependencies"])
for extra in filter(None, sys.argv[2].split(",")):
    wanted += project["optional-dependencies"][extra]
print("\n".join(wanted))
PY
step "the project's dependencies" \
  "${pip[@]}" install -c "$constraints" --build-constraint "$build_constraints" -r "$requirements"
if [ "$deps_only" = true ]; then
  echo "setup: dependencies ready ($venv); the project itself is installed by the next run" >&2
  exit 0
fi
step "classie-automl${extras:+ [$extras]}" \
  "${pip[@]}" install -c "$constraints" --build-constraint "$build_constraints" -e "$root${extras:+[$extras]}"
echo "$wanted" > "$stamp"
echo "setup: ready ($venv)" >&2
