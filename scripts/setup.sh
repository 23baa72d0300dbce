#!/usr/bin/env bash
# Installs and starts what building and testing sinew need on a fresh machine
# of this kind; safe to run again (it only installs what is missing and starts
# what is down).
#   etcd-server       the etcd registry tests start their own etcd from it
#   protobuf-compiler etcd-client's build turns etcd's .proto files into Rust
#   libprotobuf-dev   ... and imports google/protobuf/*.proto, which ship here
#   prometheus        promtool checks the exporter's output
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if ((${#need_apt[@]})); then
  echo "scripts/setup.sh: installing ${need_apt[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a system etcd on the default port; the tests start
# their own on free ports, so stop that one if it came up.
if command -v systemctl >/dev/null 2>&1; then systemctl stop etcd >/dev/null 2>&1 || true; fi
pkill -x etcd >/dev/null 2>&1 || true

# rnacos, a Nacos-compatible server from crates.io: sinew-balance's Nacos
# tests start their own on free ports. Not packaged by Debian, so built here
# (once: 961 s of CPU, 24.5 min measured on 2 shared cores); as root into
# /usr/local/bin, else into ~/.cargo/bin.
if ! command -v rnacos >/dev/null 2>&1; then
  echo "scripts/setup.sh: building rnacos (cargo install rnacos --locked; takes minutes)" >&2
  if [ "$(id -u)" = 0 ]; then root=(--root /usr/local); else root=(); fi
  cargo install rnacos --version 0.8.8 --locked "${root[@]}"
fi

# Python peers the interop tests run: an independent RFC 9421 verifier
# (http-message-signatures, with requests) for `sinew call --config` signing.
if ! python3 -c "import http_message_signatures, requests" >/dev/null 2>&1; then
  echo "scripts/setup.sh: installing http-message-signatures and requests (pip)" >&2
  python3 -m pip install --quiet "http-message-signatures==3.0.0" requests
fi
# ... and the sidecar's peers (sinew-cli tests/proxy.rs): an aiohttp
# application with aio-request's middleware, an aio-request client.
if ! python3 -c "import aiohttp, aio_request" >/dev/null 2>&1; then
  echo "scripts/setup.sh: installing aiohttp and aio-request (pip)" >&2
  python3 -m pip install --quiet "aiohttp==3.14.5" "aio-request==0.2.9"
fi

# PostgreSQL and RabbitMQ (sinew-events' tests): start them when they are down.
scripts/services.sh
# ... and their TLS listeners (amqps on 5671, PostgreSQL ssl) for sinew-events' TLS tests.
scripts/tls-services.sh
