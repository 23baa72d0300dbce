#!/usr/bin/env bash
# Turns on the TLS listeners that sinew-events' TLS tests (crates/sinew-events/
# tests/tls.rs) talk to, beside the plaintext ones the other tests use:
#
#   RabbitMQ    amqps on 127.0.0.1:5671 (amqp on 5672 stays); a client
#               certificate is verified when one is sent, not required.
#               Written to /etc/rabbitmq/conf.d/90-sinew-tls.conf; RabbitMQ
#               reads its config at boot, so the node restarts once when that
#               file or the certificates are new or changed.
#   PostgreSQL  ssl = on with the test certificate (ALTER SYSTEM, then a
#               reload, also when the certificates change: plaintext
#               connections on 5432 still work), and the
#               role sinew_mtls, which may log in over TLS with its client
#               certificate only (a `hostssl ... cert` line at the top of
#               pg_hba.conf).
#
# Certificates: made once with rcgen by sinew-events' example tls_test_certs
# (cargo builds it on first use) into $SINEW_TEST_TLS_DIR, default
# /var/lib/sinew-test-tls: ca.pem (a test CA), server.pem/server-key.pem
# (issued to `localhost` only, so verify-full to 127.0.0.1 must fail),
# client.pem/client-key.pem (CN sinew_mtls). Each server gets its own copy of
# the server files, owned by its user (PostgreSQL refuses a key others can
# read). Delete the directory to make new ones.
#
# Idempotent: on a machine where all is in place it only checks (a few psql
# calls and two TCP probes). Runs as root after scripts/services.sh (both
# services up). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${SINEW_TEST_TLS_DIR:-/var/lib/sinew-test-tls}"
amqps_port=5671
timeout_s="${SERVICES_TIMEOUT:-120}"
say() { echo "tls-services.sh: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
psql_() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq "$@"; }

# --- certificates ----------------------------------------------------------
files=(ca.pem server.pem server-key.pem client.pem client-key.pem)
missing=0
for f in "${files[@]}"; do [ -s "$dir/$f" ] || missing=1; done
if ((missing)); then
    say "generating test certificates in $dir"
    cargo run -q -p sinew-events --example tls_test_certs -- "$dir"
fi
chmod 0755 "$dir"
# A copy is rewritten only when it differs; a server whose files changed
# (new certificates) is reloaded or restarted below.
changed_postgres=0
changed_rabbitmq=0
copy_for() { # user
    local user="$1" sub="$dir/$1" f mode
    install -d -m 0755 "$sub"
    for f in ca.pem server.pem server-key.pem; do
        if ! cmp -s "$dir/$f" "$sub/$f"; then
            mode=0644; [ "$f" = server-key.pem ] && mode=0600
            install -m "$mode" -o "$user" -g "$user" "$dir/$f" "$sub/$f"
            eval "changed_$user=1"
        fi
    done
}
copy_for postgres
copy_for rabbitmq

# --- PostgreSQL --------------------------------------------------------------
pg_reload=$changed_postgres
want_cert="$dir/postgres/server.pem"
want_key="$dir/postgres/server-key.pem"
want_ca="$dir/postgres/ca.pem"
if [ "$(psql_ -c 'SHOW ssl')" != on ] \
    || [ "$(psql_ -c 'SHOW ssl_cert_file')" != "$want_cert" ] \
    || [ "$(psql_ -c 'SHOW ssl_key_file')" != "$want_key" ] \
    || [ "$(psql_ -c 'SHOW ssl_ca_file')" != "$want_ca" ]; then
    say "PostgreSQL: ssl = on with the test certificates"
    psql_ -c "ALTER SYSTEM SET ssl = on" \
        -c "ALTER SYSTEM SET ssl_cert_file = '$want_cert'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$want_key'" \
        -c "ALTER SYSTEM SET ssl_ca_file = '$want_ca'"
    pg_reload=1
fi
hba="$(psql_ -c 'SHOW hba_file')"
hba_line="hostssl all sinew_mtls 127.0.0.1/32 cert"
if ! grep -qxF "$hba_line" "$hba"; then
    say "PostgreSQL: $hba_line (top of $hba)"
    { echo "# sinew-events TLS tests (scripts/tls-services.sh): client certificate only"
      echo "$hba_line"
      cat "$hba"; } > "$hba.sinew-new"
    chown --reference="$hba" "$hba.sinew-new"
    chmod --reference="$hba" "$hba.sinew-new"
    mv "$hba.sinew-new" "$hba"
    pg_reload=1
fi
psql_ -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sinew_mtls') THEN
        CREATE ROLE sinew_mtls LOGIN;
    END IF; END \$\$"
if ((pg_reload)); then
    psql_ -c "SELECT pg_reload_conf()" >/dev/null
fi
# The reload is asynchronous: wait until a verify-full connection works.
deadline=$(( $(date +%s) + timeout_s ))
until psql "host=localhost port=5432 user=postgres dbname=postgres sslmode=verify-full sslrootcert=$dir/ca.pem" \
        -Atqc 'SELECT 1' >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then
        say "PostgreSQL does not answer with TLS (verify-full against $dir/ca.pem) within ${timeout_s}s"
        psql "host=localhost port=5432 user=postgres dbname=postgres sslmode=verify-full sslrootcert=$dir/ca.pem" -Atqc 'SELECT 1' || true
        exit 1
    fi
    sleep 0.5
done

# --- RabbitMQ ----------------------------------------------------------------
conf_dir=/etc/rabbitmq/conf.d
conf="$conf_dir/90-sinew-tls.conf"
want_conf="# sinew-events TLS tests (scripts/tls-services.sh): amqps beside amqp
listeners.ssl.default = 127.0.0.1:$amqps_port
ssl_options.cacertfile = $dir/rabbitmq/ca.pem
ssl_options.certfile = $dir/rabbitmq/server.pem
ssl_options.keyfile = $dir/rabbitmq/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false"
restart=$changed_rabbitmq
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want_conf" ]; then
    say "RabbitMQ: amqps listener on 127.0.0.1:$amqps_port ($conf)"
    install -d -m 0755 "$conf_dir"
    printf '%s\n' "$want_conf" > "$conf"
    chmod 0644 "$conf"
    restart=1
elif ! port_open "$amqps_port"; then
    restart=1
fi
if ((restart)); then
    say "restarting RabbitMQ to read its config"
    timeout 60 rabbitmqctl -q stop >/dev/null 2>&1 || true
    # Wait for the old node to be gone before starting a new one.
    for _ in $(seq 1 60); do
        timeout 10 rabbitmq-diagnostics -q ping >/dev/null 2>&1 || break
        sleep 1
    done
    rabbitmq-server -detached || true
fi
deadline=$(( $(date +%s) + timeout_s ))
until port_open 5672 && port_open "$amqps_port"; do
    if (( $(date +%s) >= deadline )); then
        say "RabbitMQ does not listen on 127.0.0.1:5672 and :$amqps_port within ${timeout_s}s (see /var/log/rabbitmq/)"
        exit 1
    fi
    sleep 1
done
# The plaintext side must be whole again too (scripts/services.sh waits for it).
scripts/services.sh
say "TLS listeners up: amqps://127.0.0.1:$amqps_port, PostgreSQL ssl on 5432 (certificates in $dir)"
