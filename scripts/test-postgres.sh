#!/usr/bin/env bash
# A throwaway PostgreSQL 16 + pgvector server on loopback for the tests (rap-memory-postgres).
#
#   scripts/test-postgres.sh start [WATCH_PID]   prints the server's URL (no database name)
#   scripts/test-postgres.sh stop DIR            stops the server whose files are in DIR
#
# The server comes from PyPI's `pgserver` wheel (PostgreSQL 16.2 with pgvector 0.6.2 under
# pgserver/pginstall), installed once with pip into $RAP_PGSERVER_DIR (default target/pgserver).
# Each start makes a new cluster in a temporary folder (about a second) on a free port of
# 127.0.0.1 with trust authentication for the local `postgres` user; nothing listens elsewhere.
# With WATCH_PID, the server stops and its folder is removed once that process exits (a test
# binary passes its own pid, so the server lives exactly as long as the tests that use it).
# PostgreSQL refuses to run as root: as root, the cluster runs as `nobody`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/lib/test-server.sh"
home="${RAP_PGSERVER_DIR:-$repo/target/pgserver}"
version="0.1.4"

as_server_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

install_once() {
  if [ ! -x "$home/pgserver/pginstall/bin/postgres" ]; then
    pip_install "$home" --no-deps "pgserver==$version"
  fi
}

install() {
  with_install_lock "$home" install_once
  bin="$home/pgserver/pginstall/bin"
  if ! as_server_user test -x "$bin/postgres"; then
    # The server user cannot reach the install (a private checkout): use a readable copy.
    local copy="${TMPDIR:-/tmp}/rap-pgserver-$version"
    if [ ! -x "$copy/pgserver/pginstall/bin/postgres" ]; then
      rm -rf "$copy.tmp.$$" && mkdir -p "$copy.tmp.$$"
      cp -a "$home/pgserver" "$copy.tmp.$$/" && chmod -R a+rX "$copy.tmp.$$"
      mv -T "$copy.tmp.$$" "$copy" 2>/dev/null || rm -rf "$copy.tmp.$$"
    fi
    bin="$copy/pgserver/pginstall/bin"
  fi
}

start() {
  local watch="${1:-}"
  install
  local dir
  dir="$(mktemp -d "${TMPDIR:-/tmp}/rap-pg.XXXXXX")"
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$dir"; fi
  as_server_user "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  local port
  port="$(free_port)"
  # fsync off: a test cluster is thrown away; nothing here needs to survive a power cut.
  as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "$bin" >"$dir/bin"
  stop_when_gone "$watch" "$0" "$dir"
  echo "postgres://postgres@127.0.0.1:$port"
  echo "$dir"
}

stop() {
  local dir="$1"
  [ -f "$dir/bin" ] || { echo "no test server in $dir" >&2; exit 1; }
  bin="$(cat "$dir/bin")"
  as_server_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 start [WATCH_PID] | stop DIR" >&2; exit 2 ;;
esac
