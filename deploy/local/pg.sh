#!/usr/bin/env bash
# Private PostgreSQL 15 cluster on loopback for nanguard's tests and demo.
#
# Usage:
#   pg.sh start DIR [PORT]  initdb DIR/data once, start on 127.0.0.1:PORT
#                           (default 54329, or the port of the last start),
#                           print the connection string on stdout
#   pg.sh stop DIR          fast shutdown (no-op when not running)
#   pg.sh restart DIR       stop, then start on the same port
#   pg.sh status DIR        exit 0 when running, 3 when not
#   pg.sh conninfo DIR      print the connection string on stdout
#
# Role and database `nanguard` (password 'nanguard', scram-sha-256 over TCP);
# role `postgres` needs no password (TCP or the unix socket in DIR).
# As root the server runs as the `postgres` OS user, which must reach DIR.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
log() { echo "pg.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }

usage() { sed -n '4,11s/^# \{0,1\}//p' "$0" >&2; exit 2; }
(($# >= 2)) || usage
cmd=$1 dir=$(realpath -m "$2")
data=$dir/data
cd /  # the postgres user may not be able to enter the caller's cwd

port() { cat "$dir/port" 2>/dev/null || echo 54329; }
conninfo() { echo "host=127.0.0.1 port=$(port) user=nanguard password=nanguard dbname=nanguard"; }
running() { [[ -f $data/PG_VERSION ]] && as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

init_cluster() {
    log "initdb $data"
    as_pg "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        -N --no-instructions >/dev/null || die "initdb failed"
    as_pg tee "$data/pg_hba.conf" >/dev/null <<HBA
local all all                   trust
host  all nanguard 127.0.0.1/32 scram-sha-256
host  all all      127.0.0.1/32 trust
HBA
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<CONF
# nanguard test cluster (deploy/local/pg.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
CONF
}

start() {
    local want=${1:-$(port)}
    [[ $want =~ ^[0-9]+$ ]] || die "bad port: $want"
    if running; then
        [[ $want == "$(port)" ]] || die "already running in $dir on port $(port)"
        log "already running on 127.0.0.1:$want"
        conninfo
        return
    fi
    mkdir -p "$dir"
    if ((EUID == 0)); then chown postgres: "$dir"; fi
    as_pg test -w "$dir" -a -x "$dir" ||
        die "postgres user cannot write $dir (parent dirs need o+x, e.g. chmod 755 a mktemp -d dir)"
    [[ -f $data/PG_VERSION ]] || init_cluster
    echo "$want" >"$dir/port"
    log "starting on 127.0.0.1:$want (log: $dir/postgres.log)"
    if ! as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -o "-p $want" \
        -w -t 30 start >/dev/null; then
        tail -n 20 "$dir/postgres.log" >&2 || true
        die "server did not start"
    fi
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$want" -t 30 || die "pg_isready: no answer in 30 s"
    # Role and database, created once (\gexec runs the generated statements).
    if ! "$PGBIN/psql" -h "$dir" -p "$want" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 >&2 <<'SQL'; then
SELECT 'CREATE ROLE nanguard LOGIN PASSWORD ''nanguard'''
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nanguard') \gexec
SELECT 'CREATE DATABASE nanguard OWNER nanguard'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'nanguard') \gexec
SQL
        die "could not create role/database nanguard"
    fi
    conninfo
}

stop() {
    if ! running; then log "not running"; return; fi
    log "stopping"
    as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null || die "stop failed"
}

case $cmd in
start) start "${3:-}" ;;
stop) stop ;;
restart) stop; start ;;
status)
    if running; then log "running on 127.0.0.1:$(port)"; else log "not running"; exit 3; fi ;;
conninfo) conninfo ;;
*) usage ;;
esac
