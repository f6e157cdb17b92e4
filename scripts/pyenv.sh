#!/usr/bin/env bash
# Creates (once) the project's Python virtualenv with scripts/requirements.txt and prints its bin dir.
# Cached under $RHEO_CACHE so CI and later runs reuse it; re-installs when requirements change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RHEO_CACHE:-$HOME/.cache/rheo}
venv=$cache/venv
req=$here/requirements.txt
stamp=$venv/.requirements.sha
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" >"$stamp"
fi
echo "$venv/bin"
