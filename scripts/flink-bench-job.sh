#!/usr/bin/env bash
# Prints the Java class path of `make bench`'s Flink job (bench/flink/WordCountBench.java):
# Apache Flink 2.3's jars (installed once by scripts/flink-cli.sh, from PyPI) and the job's
# classes, compiled once per change of its source under $RHEO_CACHE. Needs Java 17.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RHEO_CACHE:-$HOME/.cache/rheo}
flink_home=$(dirname "$(dirname "$("$here/flink-cli.sh")")")
src=$here/../bench/flink/WordCountBench.java
classes=$cache/flink-bench-$(sha256sum "$src" | cut -c1-12)
if [[ ! -f $classes/WordCountBench.class ]]; then
  rm -rf "$classes.tmp" && mkdir -p "$classes.tmp"
  javac -nowarn -cp "$flink_home/lib/*" -d "$classes.tmp" "$src" >&2
  rm -rf "$classes" && mv "$classes.tmp" "$classes"
fi
echo "$flink_home/lib/*:$classes"
