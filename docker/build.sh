#!/usr/bin/env bash
# Builds the images rheo:<version> (worker) and rheo-operator:<version> without any registry or
# Docker daemon, as OCI archives, and loads them into the test cluster's containerd when it runs:
#   1. rheo-base:bookworm from debootstrap, as an OCI layout (docker/base.sh, cached),
#   2. the binaries on the host: cargo build --release -p rheo-cli -p rheo-operator
#      (Debian bookworm, the same glibc as the base image),
#   3. umoci: the base layout plus one layer (user 10001, directories, the one binary), and the
#      image config (user, entrypoint, env, ports, volumes, labels); tar packs the layout.
# Each image is tagged `latest` and the workspace version (the chart's default tag), named
# docker.io/library/NAME:TAG, which is what Kubernetes makes of `image: NAME:TAG`.
# Output: $RHEO_CACHE/images/oci-archives/{rheo,rheo-operator}.tar; `scripts/k8s/cluster.sh up`
# loads every archive there, and this script loads them at once when the cluster is up.
# Usage: docker/build.sh [worker|operator]...   (default: both)
#   RHEO_IMAGES_NO_CARGO=1  use the binaries already in $CARGO_TARGET_DIR/<profile>
#   RHEO_IMAGES_PROFILE=debug  debug binaries (what `cargo test` already built: make e2e's images,
#                           so CI needs no release build), tagged <version>-debug only, archives
#                           NAME-debug.tar; never `latest`, so they cannot pass for release images
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/k8s/lib.sh
source scripts/k8s/oci.sh

CARGO=${CARGO:-cargo}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rheo-target}
CACHE=$RHEO_CACHE/images
BASE_LAYOUT=$CACHE/base-oci
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' Cargo.toml)
targets=("$@"); [[ ${#targets[@]} -gt 0 ]] || targets=(worker operator)
PROFILE=${RHEO_IMAGES_PROFILE:-release}
case $PROFILE in
  release) cargo_profile=(--release) TAGS=("$VERSION" latest) suffix= ;;
  debug) cargo_profile=() TAGS=("$VERSION-debug") suffix=-debug ;;
  *) echo "RHEO_IMAGES_PROFILE must be release or debug, got '$PROFILE'" >&2; exit 2 ;;
esac

log() { echo "[images] $*" >&2; }
t0=$SECONDS

docker/base.sh
t_base=$SECONDS

packages=()
for t in "${targets[@]}"; do
  case $t in
    worker) packages+=(-p rheo-cli) ;;
    operator) packages+=(-p rheo-operator) ;;
    *) echo "unknown image '$t' (worker|operator)" >&2; exit 2 ;;
  esac
done
if [[ -z ${RHEO_IMAGES_NO_CARGO:-} ]]; then
  scripts/build-deps.sh
  log "$CARGO build ${cargo_profile[*]} ${packages[*]}"
  $CARGO build "${cargo_profile[@]}" "${packages[@]}"
fi
t_cargo=$SECONDS

# The base's /etc/passwd and /etc/group plus the system user and group rheo (10001), as
# `groupadd --system --gid 10001 rheo && useradd --system --uid 10001 ...` would write them.
user_files() {
  local root=$1
  mkdir -p "$root/etc"
  tar -xOf "$CACHE/rheo-base-bookworm.tar" ./etc/passwd >"$root/etc/passwd"
  tar -xOf "$CACHE/rheo-base-bookworm.tar" ./etc/group >"$root/etc/group"
  echo "rheo:x:10001:10001::/opt/rheo:/usr/sbin/nologin" >>"$root/etc/passwd"
  echo "rheo:x:10001:" >>"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

archives=()
for t in "${targets[@]}"; do
  start=$SECONDS
  case $t in
    worker) bin=rheo image=rheo ;;
    operator) bin=rheo-operator image=rheo-operator ;;
  esac
  work=$(mktemp -d "$CACHE/build-$t.XXXXXX")
  root=$work/root layout=$work/oci
  user_files "$root"
  install -D -m 0755 "$CARGO_TARGET_DIR/$PROFILE/$bin" "$root/usr/local/bin/$bin"
  strip --strip-debug "$root/usr/local/bin/$bin" 2>/dev/null || true
  common=(--os linux --architecture "$(dpkg --print-architecture)" --config.user 10001:10001
          --config.entrypoint "$bin" --config.env TMPDIR=/tmp --config.volume /tmp
          --config.label org.opencontainers.image.version="$VERSION"
          --config.label org.opencontainers.image.licenses=Apache-2.0
          --config.label org.opencontainers.image.title="$image")
  case $t in
    worker)
      # Flink's layout: a config dir (rheo.yaml, mounted from a ConfigMap by the operator) and a
      # working dir for local state, the only writable places besides /tmp (both volumes), so
      # the image runs with a read-only root file system. `rheo run` checkpoints to ./rheo-data/.
      install -d -m 0755 "$root/opt/rheo" "$root/opt/rheo/conf"
      install -d -m 0755 -o 10001 -g 10001 "$root/opt/rheo/data"
      # REST (and /metrics) 8081, JobManager RPC 6123, TaskManager data 6121.
      config=(--config.cmd --help --config.env RHEO_CONF_DIR=/opt/rheo/conf --config.env HOME=/opt/rheo/data
              --config.workingdir /opt/rheo/data --config.volume /opt/rheo/data
              --config.exposedports 8081/tcp --config.exposedports 6123/tcp --config.exposedports 6121/tcp
              --config.label "org.opencontainers.image.description=Rheo: Apache Flink's streaming core rebuilt in Rust") ;;
    operator)
      # HTTP: /metrics, /healthz, /readyz.
      config=(--config.cmd run --config.exposedports 8080/tcp
              --config.label "org.opencontainers.image.description=Kubernetes operator for Rheo FlinkJobs") ;;
  esac
  oci_layout_copy "$BASE_LAYOUT" "$layout"
  oci_add_layer "$layout:bookworm" "$root"
  umoci config --image "$layout:bookworm" --tag "${TAGS[0]}" "${common[@]}" "${config[@]}" \
    --history.comment "rheo: user 10001, /usr/local/bin/$bin ($PROFILE build)"
  for tag in "${TAGS[@]:1}"; do umoci tag --image "$layout:${TAGS[0]}" "$tag"; done
  umoci rm --image "$layout:bookworm"
  out=$OCI_ARCHIVES/$image$suffix.tar
  oci_export "$layout" "$out" "${TAGS[@]/#/docker.io/library/$image:}"
  rm -rf "$work"
  archives+=("$out")
  log "${TAGS[*]/#/$image:} -> $out ($(du -h "$out" | cut -f1)) in $((SECONDS - start)) s"
done
t_image=$SECONDS

if scripts/k8s/cluster.sh status >/dev/null 2>&1; then
  log "loading into the test cluster's containerd (k8s.io namespace)"
  scripts/k8s/cluster.sh load "${archives[@]}"
else
  log "test cluster not running: scripts/k8s/cluster.sh up loads these archives when it starts"
fi
log "base $((t_base - t0)) s, cargo $((t_cargo - t_base)) s, images $((t_image - t_cargo)) s, load $((SECONDS - t_image)) s"
