#!/usr/bin/env bash
# Installs the Debian packages that building Rheo needs beyond a Rust toolchain (idempotent;
# apt-get only for what is missing): OpenSSL's headers and pkg-config, for librdkafka's TLS and
# SASL/SCRAM (crates/rheo-kafka builds rdkafka with its `ssl` feature against the system
# OpenSSL; the worker image has libssl3 at run time, from debootstrap's openssl package).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/k8s/lib.sh"
apt_install libssl-dev pkg-config
