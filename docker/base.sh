#!/usr/bin/env bash
# Builds the local base image rheo-base:bookworm without any registry or Docker daemon:
#   debootstrap --variant=minbase bookworm (plus ca-certificates and libssl3) -> rootfs tarball -> one-layer
#   OCI image layout (umoci), which docker/build.sh copies and adds the Rheo layer to.
# Cached twice under $RHEO_CACHE/images: the rootfs tarball and the OCI layout (base-oci/).
# Usage: docker/base.sh [--force]    (needs root for debootstrap; installs debootstrap and umoci)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/k8s/lib.sh"
source "$here/../scripts/k8s/oci.sh"

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=$RHEO_CACHE/images
TARBALL=$CACHE/rheo-base-$SUITE.tar
LAYOUT=$CACHE/base-oci          # tag: $SUITE
force=${1:-}

log() { echo "[base] $*" >&2; }

if [[ $force != --force && -s $LAYOUT/index.json && ! $LAYOUT/index.json -ot $TARBALL ]] \
   && jq -e --arg t $SUITE '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)' \
        "$LAYOUT/index.json" >/dev/null 2>&1; then
  log "rheo-base:$SUITE already in $LAYOUT; skipping (docker/base.sh --force rebuilds it)"
  exit 0
fi
apt_install debootstrap umoci jq

if [[ $force == --force || ! -s $TARBALL ]]; then
  [[ $(id -u) -eq 0 ]] || { log "building the base rootfs needs root (debootstrap): run 'sudo -E docker/base.sh' once"; exit 1; }
  mkdir -p "$CACHE"
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
  start=$SECONDS
  # libssl3: librdkafka in the rheo binary links the system OpenSSL (TLS, SASL/SCRAM); it also
  # comes with ca-certificates (through openssl), named here so that it never goes missing.
  debootstrap --variant=minbase --include=ca-certificates,libssl3 "$SUITE" "$rootfs" "$MIRROR" \
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

start=$SECONDS
rm -rf "$LAYOUT.tmp"
umoci init --layout "$LAYOUT.tmp"
umoci new --image "$LAYOUT.tmp:$SUITE"
umoci raw add-layer --image "$LAYOUT.tmp:$SUITE" "$TARBALL"
umoci config --image "$LAYOUT.tmp:$SUITE" --os linux --architecture "$(dpkg --print-architecture)" \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env LANG=C.UTF-8 --config.cmd /bin/bash \
  --history.comment "debootstrap --variant=minbase --include=ca-certificates,libssl3 $SUITE"
umoci gc --layout "$LAYOUT.tmp"
rm -rf "$LAYOUT" && mv "$LAYOUT.tmp" "$LAYOUT"
log "OCI layout $LAYOUT:$SUITE in $((SECONDS - start)) s ($(du -sh "$LAYOUT" | cut -f1))"
