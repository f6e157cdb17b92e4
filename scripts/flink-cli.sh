#!/usr/bin/env bash
# Installs (once) Apache Flink 2.3's command-line client and prints the path of its `flink`
# script. It comes from PyPI: apache-flink (bin/, 2.8 MB) and apache-flink-libraries (the
# jars, 329 MB), installed without their Python dependencies: with them, `apache-flink` pulls
# in apache-beam, pyarrow and pandas (a 1.4 GB venv that took 24 min to install here), none of
# which the client needs. Cached under $RHEO_CACHE; needs Java 17.
# Also builds tests/dashboard/RunMe.java into a jar for `flink run` (printed path: $dir/run-me.jar).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RHEO_CACHE:-$HOME/.cache/rheo}
version=2.3.0
dir=$cache/flink-$version
if [[ ! -f $dir/pyflink/bin/flink ]]; then
  mkdir -p "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" \
    "apache-flink==$version" "apache-flink-libraries==$version" >&2
  # pip --target may drop the scripts' executable bits.
  chmod +x "$dir"/pyflink/bin/*.sh "$dir/pyflink/bin/flink"
fi
jar=$dir/run-me.jar
src=$here/../tests/dashboard/RunMe.java
if [[ ! -f $jar || $src -nt $jar ]]; then
  classes=$(mktemp -d)
  javac -nowarn -cp "$dir/pyflink/lib/*" -d "$classes" "$src" >&2
  jar --create --file "$jar" --main-class RunMe -C "$classes" . >&2
  rm -rf "$classes"
fi
echo "$dir/pyflink/bin/flink"
