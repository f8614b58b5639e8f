#!/usr/bin/env bash
# What the test suite needs from the machine, in one step shared by `make test` and `.ci/run`:
#
#   postgresql      PostgreSQL server binaries (tests/servers.py starts throw-away clusters)
#   docker.io       a Docker engine (the image and compose-stack tests build and run containers)
#   docker-compose  Compose 1.29 (validates and runs deployments/compose.yaml)
#   debootstrap     builds the stand-in base images when no registry is reachable
#   chromium        headless browser for the UI tests
#
# As root (or with password-less sudo), missing packages are installed with apt (no recommended
# packages) and a Docker daemon is started when none answers. Otherwise it prints exactly what to
# run and exits 1.
# When everything is present it only checks, in about a second.
#
#   scripts/provision.sh            check, install, start the daemon
#   scripts/provision.sh --check    check only: exit 1 and say what is missing
#
# DOCKERD_FLAGS (default "--iptables=false --bridge=none": no firewall or bridge changes to the
# host, which sandboxes and containers often forbid) and DOCKERD_LOG (default
# /var/log/galaxy-dockerd.log) apply only when this script starts the daemon itself.
set -euo pipefail

DOCKERD_FLAGS=${DOCKERD_FLAGS:---iptables=false --bridge=none}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/galaxy-dockerd.log}
DOCKERD_WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}

check_only=false
case "${1:-}" in
  "") ;;
  --check) check_only=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# how to run a command as root: directly, through password-less sudo, or not at all
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  as_root=(false)
fi
can_be_root() { [ "${as_root[*]-}" != false ]; }

# package -> how to tell it is installed (a command, or a PostgreSQL server binary)
has_postgres() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null; }
has_package() {
  case "$1" in
    postgresql) has_postgres ;;
    docker.io) command -v docker >/dev/null && { command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || docker_answers; } ;;
    docker-compose) command -v docker-compose >/dev/null ;;
    debootstrap) command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] ;;
    chromium) command -v chromium >/dev/null || command -v chromium-browser >/dev/null ;;
  esac
}

docker_answers() { command -v docker >/dev/null && timeout 10 docker version >/dev/null 2>&1; }

missing=()
for package in postgresql docker.io docker-compose debootstrap chromium; do
  has_package "$package" || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if $check_only || ! can_be_root; then
    echo "provision: missing Debian packages: ${missing[*]}" >&2
    echo "provision: install them as root, then rerun:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "provision: installing ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if docker_answers; then
  exit 0
fi

if $check_only || ! can_be_root; then
  reason=$(timeout 10 docker version --format '{{.Server.Version}}' 2>&1 | grep -m1 . || true)
  echo "provision: no Docker daemon answers: $reason" >&2
  echo "provision: start a daemon as root, for example:" >&2
  echo "  dockerd $DOCKERD_FLAGS >>$DOCKERD_LOG 2>&1 &" >&2
  echo "  (or: systemctl start docker; a non-root user also needs to be in the docker group)" >&2
  exit 1
fi

# A daemon may be starting already (its pid file names a live process): wait for it, never
# start a second one on the same socket.
pid_file=/var/run/docker.pid
if ! { [ -s "$pid_file" ] && "${as_root[@]}" kill -0 "$(cat "$pid_file")" 2>/dev/null; }; then
  echo "provision: starting dockerd $DOCKERD_FLAGS (log: $DOCKERD_LOG)"
  # shellcheck disable=SC2086  # the flags are words
  "${as_root[@]}" sh -c "setsid nohup dockerd $DOCKERD_FLAGS >>'$DOCKERD_LOG' 2>&1 </dev/null &"
fi
for _ in $(seq "$DOCKERD_WAIT_SECONDS"); do
  docker_answers && exit 0
  sleep 1
done
echo "provision: dockerd did not answer within ${DOCKERD_WAIT_SECONDS}s; last lines of $DOCKERD_LOG:" >&2
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
