#!/usr/bin/env bash
# Base images for the container tests when no container registry is reachable.
#
# The project's Dockerfiles and compose file start FROM python:3.11-slim, postgres:16 and
# prefecthq/prefect:3.9.1-python3.11. For each of them this script keeps what the Docker engine
# has or can pull; only when the image is absent and cannot be pulled does it build a stand-in
# from Debian packages under the same tag, so the project's files are built exactly as a user
# builds them:
#
#   galaxy-standin/bookworm-minbase      debootstrap --variant=minbase bookworm (intermediate)
#   python:3.11-slim                     standin/python.Dockerfile: the Python 3.11 that runs the
#                                        tests (or Debian's), a venv first on PATH, and this
#                                        machine's CA bundle for pip (stand-in only)
#   postgres:16                          standin/postgres.Dockerfile: Debian's PostgreSQL 15
#   prefecthq/prefect:3.9.1-python3.11   standin/prefect.Dockerfile: pip install prefect==3.9.1
#
# Every stand-in carries the label org.galaxy-morphology.standin=<hash of its inputs>. A tag with
# a matching label is reused (a second run takes about a second); a stand-in with a different
# hash is rebuilt; a tag without the label is a real image and is never replaced.
#
#   tests/containers/standin_bases.sh      needs root (debootstrap) when it has to build
#
# STANDIN_DEBIAN_MIRROR (default http://deb.debian.org/debian), STANDIN_CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt) and STANDIN_PYTHON (default python3.11 on PATH) change where
# packages come from, which CAs pip trusts and which interpreter the Python stand-in carries.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STANDIN=$HERE/standin
LABEL=org.galaxy-morphology.standin
MIRROR=${STANDIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
INTERPRETER=${STANDIN_PYTHON:-python3.11}
SUITE=bookworm
export DOCKER_BUILDKIT=0  # BuildKit would fetch its Dockerfile frontend from a registry

MINBASE=galaxy-standin/bookworm-minbase
PYTHON=python:3.11-slim
POSTGRES=postgres:16
PREFECT=prefecthq/prefect:3.9.1-python3.11

log() { echo "standin: $*" >&2; }

# sha256 of the given strings and files, in order
digest() {
  local item
  for item in "$@"; do
    if [ -f "$item" ]; then sha256sum <"$item"; else printf '%s\n' "$item"; fi
  done | sha256sum | cut -c1-16
}

# Prefect's pins: the lines of requirements.lock (constraints for its dependencies)
prefect_constraints() { grep -E '^[A-Za-z0-9_.-]+(\[[^]]*\])?==' "$REPO/requirements.lock"; }

# the interpreter's installation prefix and full version (its build date included)
python_prefix=$("$INTERPRETER" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version; print(sys.base_prefix)')
python_version=$("$INTERPRETER" -c 'import sys; print(sys.version)')

# python.tar for python.Dockerfile: the interpreter's files, or nothing for Debian's own python3
python_tar() {
  if [ "$python_prefix" = /usr ]; then
    tar -c -T /dev/null
  else
    tar -C "$python_prefix" -c --exclude='lib/python3.11/site-packages/*' \
      --exclude=lib/python3.11/test --exclude=lib/python3.11/idlelib --exclude=lib/python3.11/tkinter \
      --exclude=lib/python3.11/turtledemo --exclude='lib/python3.11/config-3.11-*/*.a' \
      bin/python3.11 lib/libpython3.11.so.1.0 lib/libpython3.11.so lib/libpython3.so lib/python3.11 \
      include/python3.11
  fi
}

label_of() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null; }

# 0: $1 is usable as it is (a real image, or the stand-in of hash $2); 1: build it
usable() {
  local tag=$1 want=$2 have
  if have=$(label_of "$tag"); then
    if [ -z "$have" ] || [ "$have" = "<no value>" ]; then
      log "$tag: real image, kept"
      return 0
    fi
    if [ "$have" = "$want" ]; then
      log "$tag: stand-in $want, cached"
      return 0
    fi
    log "$tag: stand-in $have is stale (now $want), rebuilding"
    return 1
  fi
  if [ "$tag" != "$MINBASE" ] && timeout 300 docker pull --quiet "$tag" >/dev/null 2>&1; then
    log "$tag: pulled"
    return 0
  fi
  log "$tag: not pullable, building a stand-in"
  return 1
}

build_minbase() {
  [ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
  local root
  root=$(mktemp -d /var/tmp/galaxy-standin.XXXXXX)
  log "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
  if ! debootstrap --variant=minbase "$SUITE" "$root/rootfs" "$MIRROR" >"$root/debootstrap.log" 2>&1; then
    tail -n 20 "$root/debootstrap.log" >&2
    rm -rf "$root"
    exit 1
  fi
  # what the official Debian images drop: package caches, lists, docs; apt stays usable
  rm -rf "$root"/rootfs/var/cache/apt/archives/*.deb "$root"/rootfs/var/lib/apt/lists/* \
    "$root"/rootfs/usr/share/doc/* "$root"/rootfs/usr/share/man/* "$root"/rootfs/usr/share/locale/*
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    echo "deb ${MIRROR%/debian}/debian-security $SUITE-security main"
  } >"$root/rootfs/etc/apt/sources.list"
  tar -C "$root/rootfs" --numeric-owner -c . \
    | docker import --change "LABEL $LABEL=$hash_minbase" --change 'CMD ["bash"]' - "$MINBASE" >/dev/null
  rm -rf "$root"
  log "$MINBASE: imported"
}

# build_stand_in TAG HASH DOCKERFILE FILE...: docker build in a context holding only the files
build_stand_in() {
  local tag=$1 hash=$2 dockerfile=$3 context file started=$SECONDS previous
  shift 3
  previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  context=$(mktemp -d /var/tmp/galaxy-standin-context.XXXXXX)
  cp "$dockerfile" "$context/Dockerfile"
  for file in "$@"; do cp -L "$file" "$context/"; done
  if ! docker build --force-rm --network host --label "$LABEL=$hash" -t "$tag" "$context" >"$context.log" 2>&1; then
    tail -n 30 "$context.log" >&2
    rm -rf "$context" "$context.log"
    log "$tag: build failed"
    exit 1
  fi
  rm -f "$context.log"
  rm -rf "$context"
  log "$tag: built in $((SECONDS - started)) s"
  # the stale stand-in, unless images built on it still need it
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
}

# Each stand-in's hash covers what it is made of: the code and files that build it and the
# hash of the image it starts from, so editing other parts of this script rebuilds nothing.
hash_minbase=$(digest "$SUITE" "$MIRROR" "$(declare -f build_minbase)")
hash_python=$(digest "$hash_minbase" "$STANDIN/python.Dockerfile" "$STANDIN/pip.conf" "$CA_BUNDLE" \
  "$(declare -f python_tar)" "$python_prefix" "$python_version")
hash_postgres=$(digest "$hash_minbase" "$STANDIN/postgres.Dockerfile" "$STANDIN/postgres-entrypoint.sh")
hash_prefect=$(digest "$hash_python" "$STANDIN/prefect.Dockerfile" "$(prefect_constraints)")

build_python=false
build_postgres=false
usable "$PYTHON" "$hash_python" || build_python=true
usable "$POSTGRES" "$hash_postgres" || build_postgres=true
if { $build_python || $build_postgres; } && ! usable "$MINBASE" "$hash_minbase"; then
  build_minbase
fi
if $build_python; then
  interpreter=$(mktemp -d /var/tmp/galaxy-standin-python.XXXXXX)
  python_tar >"$interpreter/python.tar"
  build_stand_in "$PYTHON" "$hash_python" "$STANDIN/python.Dockerfile" "$STANDIN/pip.conf" "$CA_BUNDLE" \
    "$interpreter/python.tar"
  rm -rf "$interpreter"
fi
if $build_postgres; then
  build_stand_in "$POSTGRES" "$hash_postgres" "$STANDIN/postgres.Dockerfile" "$STANDIN/postgres-entrypoint.sh"
fi
if ! usable "$PREFECT" "$hash_prefect"; then
  pins=$(mktemp -d /var/tmp/galaxy-standin-pins.XXXXXX)
  prefect_constraints >"$pins/constraints.txt"
  build_stand_in "$PREFECT" "$hash_prefect" "$STANDIN/prefect.Dockerfile" "$pins/constraints.txt"
  rm -rf "$pins"
fi
