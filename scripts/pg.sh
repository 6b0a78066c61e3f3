#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests: initdb in a temporary
# directory, on a free loopback port, run as an unprivileged user (initdb
# refuses root). Installs Debian's postgresql when it is missing.
#
#   eval "$(scripts/pg.sh start)"   # exports VERIGATE_TEST_PG_URL and VERIGATE_TEST_PG_DIR
#   scripts/pg.sh stop "$VERIGATE_TEST_PG_DIR"
set -euo pipefail

bin_dir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

install_pg() {
    if ! bin_dir >/dev/null; then
        echo "pg.sh: installing postgresql (Debian)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

case "${1:-}" in
start)
    install_pg
    BIN=$(bin_dir)
    PG_USER=postgres
    id "$PG_USER" >/dev/null 2>&1 || PG_USER=nobody
    DIR=$(mktemp -d /tmp/verigate-pg.XXXXXX)
    chmod 755 "$DIR"
    mkdir "$DIR/data" "$DIR/sock" "$DIR/log"
    if [ "$(id -u)" = 0 ]; then chown "$PG_USER" "$DIR/data" "$DIR/sock" "$DIR/log"; fi
    PORT=$(free_port)
    as_user "$BIN/initdb" -D "$DIR/data" -U verigate --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
    # Durable as in production (fsync on), tuned for a test box.
    as_user "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log/server.log" -w -t 30 \
        -o "-p $PORT -k $DIR/sock -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB" start >&2 \
        || { cat "$DIR/log/server.log" >&2; exit 1; }
    "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U verigate verigate
    echo "export VERIGATE_TEST_PG_URL=postgres://verigate@127.0.0.1:$PORT/verigate"
    echo "export VERIGATE_TEST_PG_DIR=$DIR"
    ;;
stop)
    DIR=${2:?usage: pg.sh stop DIR}
    BIN=$(bin_dir)
    PG_USER=postgres
    id "$PG_USER" >/dev/null 2>&1 || PG_USER=nobody
    as_user "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start | stop DIR" >&2
    exit 64
    ;;
esac
