#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh machine
# (scripts/setup.sh), then runs the whole workspace's tests, and the tests
# of the features that are off by default: the facade's etcd registry and
# OpenTelemetry in sinew-metrics and sinew-events.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"
# The facade's `etcd` feature is off by default (building etcd-client needs
# protoc), so its end-to-end registry test is built and run on its own.
cargo test -p sinew --features etcd --test etcd "$@"
# OpenTelemetry (feature `opentelemetry`, off by default): traces that link
# across HTTP and AMQP, checked with the SDK's in-memory exporter.
cargo test -p sinew-metrics -p sinew-events --features opentelemetry --test otel "$@"
