#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh machine
# (scripts/setup.sh), then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo test --workspace "$@"
