#!/bin/sh
# Entrypoint of the postgres:16 stand-in (postgres.Dockerfile): what the real image's
# docker-entrypoint.sh does for a first start, without its less common options.
#   - as root: own $PGDATA and the socket folder, then run again as the postgres user
#   - empty $PGDATA: initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD
#     (required unless POSTGRES_HOST_AUTH_METHOD=trust), password authentication for every
#     TCP client except loopback, POSTGRES_DB (default: the user's name) created, then every
#     /docker-entrypoint-initdb.d/*.sql (psql as POSTGRES_USER on POSTGRES_DB) and *.sh (sourced)
#     on a server reachable only by its socket, so no TCP client sees it before it is ready
#   - then `postgres` listening on every address
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user=${POSTGRES_USER:-postgres}
    database=${POSTGRES_DB:-$user}
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    password_file=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$password_file"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS are words
    initdb --username="$user" --pwfile="$password_file" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$password_file"
    echo "host all all all $auth" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"

    pg_ctl -w -o "-c listen_addresses=''" start
    if [ "$database" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
            --command="CREATE DATABASE \"$database\""
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) echo "running $script"
                   psql -v ON_ERROR_STOP=1 --username="$user" --dbname="$database" --file="$script" ;;
            *.sh) echo "sourcing $script"
                  # shellcheck disable=SC1090
                  . "$script" ;;
            *) if [ -e "$script" ]; then echo "ignoring $script"; fi ;;
        esac
    done
    pg_ctl -w -m fast stop
    echo "initialisation done; starting the server"
fi

exec "$@"
