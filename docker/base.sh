#!/usr/bin/env bash
# Builds the local base image rheo-base:bookworm without any registry:
#   debootstrap --variant=minbase bookworm (plus ca-certificates) -> tarball -> docker import.
# Cached twice: the image itself (skipped if present) and the rootfs tarball under
# $RHEO_CACHE/images, so a machine whose Docker engine lost its images re-imports in seconds.
# Usage: docker/base.sh [--force]    (needs root for debootstrap; installs it via apt-get if missing)
set -euo pipefail

IMAGE=${RHEO_BASE_IMAGE:-rheo-base:bookworm}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${RHEO_CACHE:-$HOME/.cache/rheo}/images
TARBALL=$CACHE/rheo-base-$SUITE.tar
force=${1:-}

log() { echo "[base] $*" >&2; }

if [[ $force != --force ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present; skipping (docker/base.sh --force rebuilds it)"
  exit 0
fi

if [[ $force == --force || ! -s $TARBALL ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    log "building the base rootfs needs root (debootstrap): run 'sudo -E docker/base.sh' once, then make images"
    exit 1
  fi
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  mkdir -p "$CACHE"
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
  start=$SECONDS
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -30 "$CACHE/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  log "debootstrap took $((SECONDS - start)) s"
  # Slim the rootfs: package caches, apt lists, docs, man pages and locales are not needed at run time.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
         "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
         "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
         "$rootfs"/tmp/* "$rootfs"/var/tmp/*
  find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
  # debootstrap leaves the host's resolv.conf/hostname; the container runtime provides its own.
  rm -f "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
  tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  log "rootfs tarball $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

log "docker import $TARBALL -> $IMAGE"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" <"$TARBALL" >/dev/null
docker image ls "$IMAGE" >&2
