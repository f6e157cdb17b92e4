#!/usr/bin/env bash
# Builds the images rheo:latest (worker) and rheo-operator:latest without any registry:
#   1. rheo-base:bookworm from debootstrap (docker/base.sh, cached),
#   2. the binaries on the host: cargo build --release -p rheo -p rheo-operator,
#   3. docker build with a context dir holding only the one binary.
# Each image is tagged `latest` and the workspace version (the chart's default tag).
# Usage: docker/build.sh [worker|operator]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rheo-target}
CACHE=${RHEO_CACHE:-$HOME/.cache/rheo}/images
BASE_IMAGE=${RHEO_BASE_IMAGE:-rheo-base:bookworm}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' Cargo.toml)
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}   # no buildx on these machines: the classic builder
targets=("$@"); [[ ${#targets[@]} -gt 0 ]] || targets=(worker operator)

log() { echo "[images] $*" >&2; }
t0=$SECONDS

docker/base.sh
t_base=$SECONDS

packages=()
for t in "${targets[@]}"; do
  case $t in
    worker) packages+=(-p rheo) ;;
    operator) packages+=(-p rheo-operator) ;;
    *) echo "unknown image '$t' (worker|operator)" >&2; exit 2 ;;
  esac
done
log "$CARGO build --release ${packages[*]}"
$CARGO build --release "${packages[@]}"
t_cargo=$SECONDS

for t in "${targets[@]}"; do
  case $t in
    worker) bin=rheo image=rheo ;;
    operator) bin=rheo-operator image=rheo-operator ;;
  esac
  ctx=$CACHE/context-$t
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$CARGO_TARGET_DIR/release/$bin" "$ctx/$bin"
  strip --strip-debug "$ctx/$bin" 2>/dev/null || true
  start=$SECONDS
  log "docker build $image:latest $image:$VERSION (context $ctx: $(du -sh "$ctx" | cut -f1))"
  docker build --quiet -f "docker/$t.Dockerfile" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
    -t "$image:latest" -t "$image:$VERSION" "$ctx" >/dev/null
  log "$image built in $((SECONDS - start)) s"
done

log "base $((t_base - t0)) s, cargo $((t_cargo - t_base)) s, docker $((SECONDS - t_cargo)) s"
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^(rheo|rheo-operator|rheo-base):' >&2 || true
