#!/usr/bin/env bash
# Creates (or reuses) the project's own virtual environment with the verified package set.
# pip alone cannot install auto-sklearn 0.15 on Python 3.11: scikit-learn 0.24.2 has no
# wheel for 3.11 and must be compiled against old numpy/Cython without build isolation (see README, "Install").
# The Docker image is built by this same script (docker/Dockerfile):
#   --deps-only          everything but the project itself (an image layer that survives code changes)
#   CLASSIE_EXTRAS=...   the project's optional extras to install ("test" by default; "" in the image)
#   CLASSIE_BUILD_JOBS=N compile jobs (default: one per core this process may use)
# What compiles, compiles once: scikit-learn with N jobs, and beside it, one after the other, the other packages that
# have no wheel for Python 3.11; each into pip's wheel cache (reused by the next set-up: no compile) and then installed.
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
# The cores this process may use (not `nproc`, which an OMP_NUM_THREADS=1 set for training would bring down to 1).
cores="$("$python" -c 'import os; print(len(os.sched_getaffinity(0)))')"
jobs="${CLASSIE_BUILD_JOBS:-$cores}"
[[ "$jobs" =~ ^[1-9][0-9]{0,2}$ ]] || {
  echo "setup: CLASSIE_BUILD_JOBS=$jobs is not a number of compile jobs; give one from 1 to 999, or unset it for" \
       "one per core ($cores)" >&2
  exit 1
}
# scikit-learn's build: SKLEARN_BUILD_PARALLEL extensions at a time, at most NPY_NUM_BUILD_JOBS compilers at once
# (numpy.distutils), and Cython run by joblib.cpu_count() processes (LOKY_MAX_CPU_COUNT), joblib being installed first.
export SKLEARN_BUILD_PARALLEL="$jobs" NPY_NUM_BUILD_JOBS="$jobs" LOKY_MAX_CPU_COUNT="$jobs"
# Without debug information (Python's own flags ask for -g): the same -O3 code, as in the wheels PyPI serves, for a
# quarter to a third less compiler time (measured on ConfigSpace's largest file) and wheels of 16 MB instead of 42.
# A CFLAGS of your own is kept as it is.
export CFLAGS="${CFLAGS--g0}"
started=$SECONDS
echo "setup: building $venv (compile jobs: $jobs; the first time on a machine takes ~6 minutes on 2 cores, later" \
     "~1.5 minutes with pip's cache)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
export PATH="$venv/bin:$PATH"   # pyrfr's build needs the swig that PyPI's `swig` puts in the venv's bin/
log="$venv/setup.log"
: > "$log"
wheels="$venv/.setup-wheels"   # the wheels compiled by this run, until they are installed
trap 'rm -rf "$wheels" "$venv"/.setup-lane-*.log' EXIT

took() {  # seconds since $1, as "1m05s" or "42s"
  local s=$((SECONDS - $1))
  if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}
step() {  # run one install step; its output goes to the log, shown only if the step fails
  echo "setup: $1" >&2
  shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: failed; the whole output is in $log" >&2
    exit 1
  fi
}

step "build tools (wheels: seconds)" "${pip[@]}" install -c "$constraints" --upgrade pip wheel setuptools
# joblib: scikit-learn's build runs Cython in parallel only when it can import it.
step "numpy, scipy, Cython, swig, joblib (wheels: seconds)" \
  "${pip[@]}" install -c "$constraints" numpy scipy Cython swig joblib

# The packages with no wheel for Python 3.11, each built once into a wheel (kept in pip's cache) and then installed:
# scikit-learn with $jobs jobs, and beside it the others, one after the other. How long each took on 2 cores:
declare -A usual=([scikit-learn]="~4.5 min" [pyrfr]="~1 min" [ConfigSpace]="~2 min")
others=(pyrfr ConfigSpace auto-sklearn smac pynisher liac-arff)   # the last four are pure Python: seconds
cache_dir="$("${pip[@]}" cache dir 2>/dev/null || true)"   # empty when pip's cache is off (PIP_NO_CACHE_DIR)
declare -A version state   # state: installed (nothing to do), cached (a wheel in pip's cache) or build
while read -r name pinned where; do
  version[$name]=$pinned state[$name]=$where
done < <("$venv/bin/python" - "$constraints" "$cache_dir" scikit-learn "${others[@]}" <<'PY'
import importlib.metadata, os, re, sys

def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

constraints, cache, *names = sys.argv[1:]
pins = {}
for line in open(constraints, encoding="utf-8"):
    found = re.match(r"\s*([A-Za-z0-9._-]+)==(\S+)", line)
    if found:
        pins[canonical(found.group(1))] = found.group(2)
cached = set()
for _folder, _dirs, files in os.walk(os.path.join(cache, "wheels")) if cache else ():
    cached.update((canonical(f.split("-")[0]), f.split("-")[1]) for f in files if f.endswith(".whl"))
for name in names:
    version = pins[canonical(name)]
    try:
        installed = importlib.metadata.version(name) == version
    except importlib.metadata.PackageNotFoundError:
        installed = False
    print(name, version, "installed" if installed else "cached" if (canonical(name), version) in cached else "build")
PY
)

named() {  # "NAME VERSION (how it comes)" of the packages given; those that come the same way share their "(how)"
  local name how group="" last="" out=""
  for name in "$@"; do
    case "${state[$name]}/${usual[$name]:-}" in
      cached/*) how="from pip's cache, no compile" ;;
      build/) how="pure Python, seconds" ;;
      *) how="compiles, ${usual[$name]} on 2 cores" ;;
    esac
    if [ -n "$group" ] && [ "$how" != "$last" ]; then
      out+="$group ($last), " group=""
    fi
    group+="${group:+, }$name ${version[$name]}" last=$how
  done
  echo "$out$group ($last)"
}
lane() {  # LANE PACKAGES...: build the packages' wheels into $wheels, one after the other; say when done
  local lane_log="$venv/.setup-lane-$1.log" t0=$SECONDS label
  shift
  label="$(printf '%s, ' "$@")"
  if "${pip[@]}" wheel --no-deps --no-build-isolation -c "$constraints" -w "$wheels" "$@" >"$lane_log" 2>&1; then
    echo "setup:   ${label%, }: done in $(took "$t0")" >&2
  else
    echo "setup:   ${label%, }: failed after $(took "$t0")" >&2
    return 1
  fi
}
pids=() lanes=() failed=""
start() {  # a lane: beside the one running when there are jobs to spare, else now
  if [ "$jobs" -gt 1 ]; then
    lane "$@" &
    pids+=($!) lanes+=("$1")
  else
    lane "$@" || failed=$1
  fi
}
mkdir -p "$wheels"
if [ "${state[scikit-learn]}" != installed ]; then
  echo "setup: $(named scikit-learn | sed "s/compiles,/compiles with $jobs job$([ "$jobs" = 1 ] || echo s),/")" >&2
  start sklearn scikit-learn
fi
to_build=()
for name in "${others[@]}"; do
  [ "${state[$name]}" = installed ] || to_build+=("$name")
done
if [ -z "$failed" ] && [ ${#to_build[@]} -gt 0 ]; then
  if [ ${#pids[@]} -gt 0 ]; then
    echo "setup: beside it, one after the other: $(named "${to_build[@]}")" >&2
  else
    echo "setup: one after the other: $(named "${to_build[@]}")" >&2
  fi
  start others "${to_build[@]}"
fi
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed="${failed:-${lanes[$i]}}"
done
cat "$venv"/.setup-lane-*.log >>"$log" 2>/dev/null || true
if [ -n "$failed" ]; then
  tail -n 40 "$venv/.setup-lane-$failed.log" >&2
  echo "setup: failed; the whole output is in $log" >&2
  exit 1
fi
step "auto-sklearn and scikit-learn with the rest of their dependencies (wheels: ~20 s)" \
  "${pip[@]}" install -c "$constraints" --no-build-isolation --find-links "$wheels" auto-sklearn scikit-learn
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
step "the project's dependencies (wheels: ~40 s)" \
  "${pip[@]}" install -c "$constraints" --build-constraint "$build_constraints" -r "$requirements"
if [ "$deps_only" = true ]; then
  echo "setup: dependencies ready ($venv) in $(took "$started"); the project itself is installed by the next run" >&2
  exit 0
fi
step "classie-automl${extras:+ [$extras]} (seconds)" \
  "${pip[@]}" install -c "$constraints" --build-constraint "$build_constraints" -e "$root${extras:+[$extras]}"
echo "$wanted" > "$stamp"
echo "setup: ready ($venv) in $(took "$started")" >&2
