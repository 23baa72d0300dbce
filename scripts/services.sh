#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ when they are down and wait until both answer.
# Idempotent and fast (two probes) when both are already up.
#   scripts/services.sh            start what is down, wait up to 120s
#   SERVICES_TIMEOUT=60 scripts/services.sh
set -euo pipefail

timeout_s="${SERVICES_TIMEOUT:-120}"
pg_host=127.0.0.1
amqp_port=5672

pg_up() { pg_isready -q -h "$pg_host" >/dev/null 2>&1; }
# A TCP probe first (cheap), then the AMQP-level ping when the CLI is there.
amqp_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$amqp_port") >/dev/null 2>&1; }
amqp_up() {
    amqp_port_open || return 1
    if command -v rabbitmq-diagnostics >/dev/null 2>&1; then
        timeout 20 rabbitmq-diagnostics -q ping >/dev/null 2>&1
    fi
}

start_pg() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "services.sh: PostgreSQL is down and pg_ctlcluster is not installed" >&2
        return 1
    fi
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    echo "services.sh: starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
}

start_rabbit() {
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "services.sh: RabbitMQ is down and rabbitmq-server is not installed" >&2
        return 1
    fi
    # The node may be running with the app stopped (rabbitmqctl stop_app):
    # the node answers a ping, the AMQP port is closed.
    if timeout 20 rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        echo "services.sh: starting the RabbitMQ app" >&2
        timeout 60 rabbitmqctl -q start_app || true
    else
        echo "services.sh: starting RabbitMQ" >&2
        rabbitmq-server -detached || true
    fi
}

if ! pg_up; then start_pg; fi
if ! amqp_port_open; then start_rabbit; fi

deadline=$(( $(date +%s) + timeout_s ))
until pg_up; do
    if (( $(date +%s) >= deadline )); then
        echo "services.sh: PostgreSQL did not answer on $pg_host:5432 within ${timeout_s}s" >&2
        exit 1
    fi
    sleep 0.5
done
until amqp_up; do
    if (( $(date +%s) >= deadline )); then
        echo "services.sh: RabbitMQ did not answer on 127.0.0.1:$amqp_port within ${timeout_s}s" >&2
        exit 1
    fi
    sleep 1
done
echo "services.sh: PostgreSQL and RabbitMQ are up" >&2
