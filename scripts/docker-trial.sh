#!/usr/bin/env bash
# The container trial: the project's Docker image built and run for real, on a machine like the ones this project is
# developed on (Debian 12, root, the package registries but no image registry). tests/test_docker_trial.py holds the
# checks; this script provides what they need and runs them:
#   1. Docker's engine: the one at $DOCKER_HOST when it answers (left running), else one of its own, started with
#      its own folders under $CLASSIE_DOCKER_DIR (default ~/.cache/classie-docker-trial, where the images stay
#      cached between runs), overlay2 storage where it works (else vfs), the default bridge off (compose's own
#      networks work), stopped at the end. Debian's docker.io, debootstrap and
#      docker-compose are installed first when missing (root only).
#   2. A stand-in for python:3.11-slim-bookworm, which no registry here can give: Debian 12's own python3.11 in a
#      debootstrap root, imported once as $CLASSIE_TRIAL_BASE and kept. The machine's CA bundle goes into this
#      stand-in only (the registries are reached through it), never into the project's image.
#   3. The checks, with the service's .venv (./dev setup): the images are built by them (docker/Dockerfile
#      unchanged, Label Studio from docker/label-studio.Dockerfile and its lock), and every figure they measure is
#      written to test-artifacts/docker-trial.json.
#
#   scripts/docker-trial.sh                every check
#   scripts/docker-trial.sh --cold         the same after removing the images and the build cache (a cold build)
#   scripts/docker-trial.sh -k serve       pytest's own options go through (here: only the `serve` checks)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cold=false
[ "${1:-}" = "--cold" ] && { cold=true; shift; }
dir="${CLASSIE_DOCKER_DIR:-$HOME/.cache/classie-docker-trial}"
base="${CLASSIE_TRIAL_BASE:-classie-standin/python:3.11-bookworm}"
say() { echo "docker-trial: $*" >&2; }

need=()
for tool in dockerd:docker.io docker:docker.io debootstrap:debootstrap docker-compose:docker-compose; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { say "missing ${need[*]} (Debian packages); install them as root, then run again"; exit 2; }
  say "installing Debian's ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# An engine that ended without its own clean-up (killed, or the machine restarted) leaves its network namespace and
# layer mounts under $dir; they are unmounted before a new engine starts and after ours stops.
unmount_leftovers() {
  mount | awk -v d="$dir/" 'index($3, d) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
stop_engine() {
  say "stopping the engine"
  local pid; pid="$(cat "$dir/dockerd.pid" 2>/dev/null)" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  unmount_leftovers
}

if [ -z "${DOCKER_HOST:-}" ] || ! docker version >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { say "no engine at DOCKER_HOST and not root to start one"; exit 2; }
  mkdir -p "$dir"
  pid="$(cat "$dir/dockerd.pid" 2>/dev/null || true)"
  { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || unmount_leftovers
  export DOCKER_HOST="unix://$dir/docker.sock"
  # overlay2 where the kernel and the folder allow it (Docker's default; vfs copies every layer in full: a build
  # took 3-4 times as long), else vfs.
  for driver in ${CLASSIE_DOCKER_STORAGE:-overlay2 vfs}; do
    docker version >/dev/null 2>&1 && break
    say "starting Docker's engine ($driver; folders and socket in $dir, log $dir/dockerd.log)"
    dockerd --storage-driver="$driver" --bridge=none --iptables=false --ip-masq=false --data-root "$dir/root" \
      --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" --host "$DOCKER_HOST" >"$dir/dockerd.log" 2>&1 &
    trap stop_engine EXIT
    for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
  done
  docker version >/dev/null 2>&1 || { tail -20 "$dir/dockerd.log" >&2; say "the engine did not start"; exit 1; }
fi
say "engine $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST, storage $(docker info -f '{{.Driver}}')"

if $cold; then
  say "cold: removing the project's images and the build cache (the stand-in base stays)"
  docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^(classie-automl|classie-label-studio|heartexlabs/label-studio):' \
    | xargs -r docker image rm -f >/dev/null || true  # grep finds none: nothing to remove
  docker builder prune -af >/dev/null
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  say "building the stand-in base $base from Debian 12's packages (debootstrap, ~3 minutes, once)"
  work="$(mktemp -d)"
  debootstrap --variant=minbase bookworm "$work" http://deb.debian.org/debian >"$dir/debootstrap.log" 2>&1 \
    || { tail -20 "$dir/debootstrap.log" >&2; rm -rf "$work"; exit 1; }
  chroot "$work" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends python3.11 python3.11-venv python3.11-dev ca-certificates >/dev/null && \
    ln -sf /usr/bin/python3.11 /usr/local/bin/python3.11 && apt-get clean && rm -rf /var/lib/apt/lists/*"
  # The machine's CA bundle (pip's `cert` here): the stand-in's builds reach the registries through it.
  cp "$(python3 -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)" \
    "$work/etc/ssl/certs/ca-certificates.crt"
  tar -C "$work" -c . | docker import - "$base" >/dev/null
  rm -rf "$work"
fi

./dev setup
say "running the checks (tests/test_docker_trial.py)"
CLASSIE_DOCKER_TRIAL=1 CLASSIE_TRIAL_BASE="$base" "${CLASSIE_VENV:-$root/.venv}/bin/python" -m pytest \
  tests/test_docker_trial.py -p no:cacheprovider -p no:xdist -v -rA "$@"
