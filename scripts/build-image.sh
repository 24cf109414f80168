#!/usr/bin/env bash
# Build the image-gateway container image without a Docker engine or a container registry,
# then run it and prove it works: GET /healthz, one POST /v1/upscale, then a SIGTERM drain.
#
#   scripts/build-image.sh            # base (once), build, smoke test
#   scripts/build-image.sh base       # only bootstrap the local Debian base image
#   scripts/build-image.sh build      # only build (the base must exist)
#   scripts/build-image.sh smoke      # only run the built image and call it
#
# How: debootstrap makes a Debian bookworm root filesystem (python3 3.11 from Debian's own
# packages) from the Debian mirror, buildah imports it as a local base image, and
# `buildah bud --storage-driver vfs --isolation chroot` builds the Dockerfile on it with
# --build-arg BASE_IMAGE=<that base>. Only Debian's mirror and PyPI are contacted.
# Needs root (debootstrap, chroot). Installs buildah, debootstrap, curl and jq with apt-get
# when they are missing.
#
# Settings (environment): IMAGE (the tag built), BASE_IMAGE, DEBIAN_MIRROR, DEBIAN_SUITE,
# WORK_DIR (the debootstrap folder), SMOKE_PORT (the port the smoke test uses),
# REBUILD_BASE=1 (bootstrap the base again even if it exists), CA_BUNDLE (the CA bundle
# that the build's RUN steps trust, default: this host's; for hosts behind a TLS-inspecting
# proxy. It is mounted while building only and ends up in no image).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-localhost/image-gateway:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-python:3.11-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
WORK_DIR=${WORK_DIR:-/var/tmp/image-gateway-build}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SMOKE_PORT=${SMOKE_PORT:-18080}
BUILDAH=(buildah --storage-driver vfs)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_tools() {
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "install ${missing[*]} (apt-get install ${missing[*]})"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# The base image: Debian's minimal variant plus python3 (3.11 in bookworm), its venv module
# (the Dockerfile makes a virtualenv) and CA certificates (pip and the vendors speak HTTPS).
bootstrap_base() {
  if image_exists "$BASE_IMAGE" && [ "${REBUILD_BASE:-0}" != 1 ]; then
    log "base $BASE_IMAGE exists (REBUILD_BASE=1 to make it again)"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  local rootfs="$WORK_DIR/rootfs"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  log "debootstrap $DEBIAN_SUITE from $DEBIAN_MIRROR into $rootfs (a few minutes)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$WORK_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  log "importing the root filesystem as $BASE_IMAGE"
  tar -C "$rootfs" --numeric-owner -cf "$WORK_DIR/rootfs.tar" .
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$WORK_DIR/rootfs.tar" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs" "$WORK_DIR/rootfs.tar"
}

build_image() {
  image_exists "$BASE_IMAGE" || die "no base image $BASE_IMAGE: run '$0 base' first"
  local trust=()
  # pip in the build stage trusts the system bundle (Debian's pip is patched to use it).
  [ -f "$CA_BUNDLE" ] && trust=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
  log "buildah bud $IMAGE from $BASE_IMAGE"
  # --format docker keeps HEALTHCHECK (the OCI image format has no such field).
  "${BUILDAH[@]}" bud --isolation chroot --format docker --pull-never --layers --force-rm \
    "${trust[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --target runtime --tag "$IMAGE" \
    --file "$ROOT/Dockerfile" "$ROOT"
  log "built $IMAGE: $("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE")"
}

SMOKE_CONTAINER=
SMOKE_PID=
remove_smoke_container() {
  local app
  if [ -n "$SMOKE_PID" ] && kill -0 "$SMOKE_PID" 2>/dev/null; then
    app=$(gateway_pid "$SMOKE_PID") && kill -TERM "$app" 2>/dev/null
    wait "$SMOKE_PID" 2>/dev/null || true
  fi
  if [ -n "$SMOKE_CONTAINER" ]; then
    "${BUILDAH[@]}" rm "$SMOKE_CONTAINER" >/dev/null 2>&1 || true
  fi
}

wait_for_healthz() {
  local url="http://127.0.0.1:$SMOKE_PORT/healthz" _
  for _ in $(seq 1 120); do
    curl -fsS --max-time 2 "$url" >/dev/null 2>&1 && return 0
    kill -0 "$1" 2>/dev/null || die "the gateway exited before it answered /healthz"
    sleep 0.5  # polling a process that is starting up; bounded to 60 s
  done
  die "no answer from $url within 60 s"
}

# A 64x48 PNG made with the host's python3 standard library only (zlib + struct).
tiny_png_base64() {
  python3 - <<'PY'
import base64, struct, zlib
w, h = 64, 48
rows = b"".join(
    b"\x00" + bytes(v for x in range(w) for v in (x * 4 % 256, y * 5 % 256, 128)) for y in range(h)
)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
print(base64.b64encode(png).decode())
PY
}

# Runs the image's entrypoint with `buildah run` (chroot isolation: the host's network, so
# the gateway is reachable on 127.0.0.1), calls it, then sends SIGTERM and checks the drain.
smoke_test() {
  image_exists "$IMAGE" || die "no image $IMAGE: run '$0 build' first"
  local ctr pid body
  ctr=$("${BUILDAH[@]}" from --pull-never "$IMAGE")
  SMOKE_CONTAINER=$ctr
  trap remove_smoke_container EXIT
  log "starting $IMAGE on 127.0.0.1:$SMOKE_PORT as $("${BUILDAH[@]}" inspect --format '{{.OCIv1.Config.User}}' "$ctr")"
  "${BUILDAH[@]}" run --isolation chroot --env "IMAGE_GATEWAY_PORT=$SMOKE_PORT" \
    --env IMAGE_GATEWAY_HOST=127.0.0.1 "$ctr" -- image-gateway >"$WORK_DIR/smoke.log" 2>&1 &
  pid=$!
  SMOKE_PID=$pid
  wait_for_healthz "$pid"
  log "GET /healthz"
  curl -sS -w '\nHTTP %{http_code}\n' "http://127.0.0.1:$SMOKE_PORT/healthz"
  run_image_healthcheck "$ctr"
  log "POST /v1/upscale (64x48 PNG, scale 2, provider local)"
  body=$(printf '{"image":"%s","scale":2,"provider":"local"}' "$(tiny_png_base64)")
  curl -sS -H 'content-type: application/json' -d "$body" -w '\nHTTP %{http_code}\n' \
    "http://127.0.0.1:$SMOKE_PORT/v1/upscale" | sed -E 's/"data":"([^"]{24})[^"]*"/"data":"\1..."/'
  log "SIGTERM: the gateway drains and exits"
  stop_gateway "$pid"
}

# The image's own HEALTHCHECK command (kept by --format docker), run inside the container.
run_image_healthcheck() {
  local check
  check=$("${BUILDAH[@]}" inspect --type image "$IMAGE" | jq -c '.Docker.config.Healthcheck.Test')
  log "HEALTHCHECK $check"
  [ "$(jq -r '.[0]' <<<"$check")" = CMD ] || die "unexpected HEALTHCHECK form: $check"
  mapfile -t command < <(jq -r '.[1:][]' <<<"$check")
  "${BUILDAH[@]}" run --isolation chroot --env "IMAGE_GATEWAY_PORT=$SMOKE_PORT" "$1" -- \
    "${command[@]}" || die "the image's HEALTHCHECK failed"
  log "HEALTHCHECK passed (exit 0)"
}

# The gateway process under `buildah run` (which does not forward signals itself): the
# descendant of the process we started that runs the image-gateway entrypoint.
gateway_pid() {
  local pids=("$1") next child
  while [ ${#pids[@]} -gt 0 ]; do
    next=()
    for child in $(ps -o pid= --ppid "$(IFS=,; echo "${pids[*]}")"); do
      grep -q 'image-gateway' "/proc/$child/cmdline" 2>/dev/null && [ -z "$(ps -o pid= --ppid "$child")" ] \
        && { echo "$child"; return 0; }
      next+=("$child")
    done
    pids=("${next[@]}")
  done
  return 1
}

# SIGTERM to the app itself, as a container runtime sends it. The gateway drains, shuts
# down and exits 0, and `buildah run` exits with that status (any death by a signal would
# be reported as 1); the gateway's own log shows the drain.
stop_gateway() {
  local status=0 app
  app=$(gateway_pid "$1") || die "cannot find the gateway process under $1"
  kill -TERM "$app"
  wait "$1" || status=$?
  sed 's/^/    gateway| /' "$WORK_DIR/smoke.log" >&2
  log "exit status after SIGTERM: $status"
  if [ "$status" != 0 ] || ! grep -q 'draining: ' "$WORK_DIR/smoke.log"; then
    die "the gateway did not drain and exit 0 on SIGTERM"
  fi
  log "drained and exited 0"
}

main() {
  ensure_tools
  mkdir -p "$WORK_DIR"
  case "${1:-all}" in
    base) bootstrap_base ;;
    build) build_image ;;
    smoke) smoke_test ;;
    all) bootstrap_base && build_image && smoke_test ;;
    *) die "usage: $0 [all|base|build|smoke]" ;;
  esac
}

main "$@"
