# OCI image helpers without a Docker daemon: umoci edits an OCI image layout, tar packs it, and
# containerd's `ctr images import` loads it (sourced by scripts/k8s/*.sh and docker/*.sh).
# Layers are plain tarballs made on the host, so no build step runs inside a container.

# Finished OCI archives (one image, possibly several tags) that `cluster.sh up` loads.
OCI_ARCHIVES=${RHEO_CACHE:-$HOME/.cache/rheo}/images/oci-archives

# oci_layout_copy SRC DEST: a new layout DEST holding SRC's images; blobs are hard links (blobs are
# content-addressed and never rewritten), index.json and oci-layout are real copies.
oci_layout_copy() {
  local src=$1 dest=$2
  rm -rf "$dest" && mkdir -p "$dest/blobs"
  cp -al "$src/blobs/." "$dest/blobs/"
  cp "$src/index.json" "$src/oci-layout" "$dest/"
}

# oci_add_layer LAYOUT:TAG DIR: adds DIR's tree, with its numeric owners and modes, as one layer.
oci_add_layer() {
  local image=$1 dir=$2 tarball
  tarball=$(mktemp --suffix=.tar)
  tar --numeric-owner --sort=name --mtime=@0 -C "$dir" -cf "$tarball" .
  umoci raw add-layer --image "$image" "$tarball"
  rm -f "$tarball"
}

# oci_export LAYOUT OUT.tar REF...: packs LAYOUT into an OCI archive whose index names each REF
# (a full reference such as docker.io/library/rheo:0.1.0; its tag must be a tag of LAYOUT).
# containerd names an imported image after the io.containerd.image.name annotation.
oci_export() {
  local layout=$1 out=$2; shift 2
  local refs_json entries
  refs_json=$(printf '%s\n' "$@" | jq -R . | jq -s .)
  entries=$(jq --argjson refs "$refs_json" '
    [ .manifests[] as $m | $refs[] | select(sub(".*:"; "") == $m.annotations["org.opencontainers.image.ref.name"])
      | . as $ref | $m | .annotations = {"org.opencontainers.image.ref.name": ($ref | sub(".*:"; "")),
                                         "io.containerd.image.name": $ref} ]' "$layout/index.json")
  [[ $(jq length <<<"$entries") -eq $# ]] || { echo "oci_export: not every tag of '$*' is in $layout" >&2; return 1; }
  jq --argjson e "$entries" '.manifests = $e' "$layout/index.json" >"$layout/index.json.new"
  mv "$layout/index.json.new" "$layout/index.json"
  umoci gc --layout "$layout"
  mkdir -p "$(dirname "$out")"
  tar -C "$layout" -cf "$out.tmp" oci-layout index.json blobs && mv "$out.tmp" "$out"
}
