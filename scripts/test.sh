#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh machine, then runs
# the whole workspace's tests. Safe to run again; it only starts what is down.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if ((${#need_apt[@]})); then
  echo "scripts/test.sh: installing ${need_apt[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a system etcd on the default port; the tests start
# their own on free ports, so stop that one if it came up.
if command -v systemctl >/dev/null 2>&1; then systemctl stop etcd >/dev/null 2>&1 || true; fi
pkill -x etcd >/dev/null 2>&1 || true

# PostgreSQL and RabbitMQ (sinew-events' tests): start them when they are down.
scripts/services.sh

exec cargo test --workspace "$@"
