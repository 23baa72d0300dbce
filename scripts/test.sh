#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh machine
# (scripts/setup.sh), then runs the whole workspace's tests and the
# facade's etcd test (its feature is off by default).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"
# The facade's `etcd` feature is off by default (building etcd-client needs
# protoc), so its end-to-end registry test is built and run on its own.
cargo test -p sinew --features etcd --test etcd "$@"
