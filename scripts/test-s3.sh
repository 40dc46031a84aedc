#!/usr/bin/env bash
# A throwaway S3-compatible server on loopback for the tests (image bytes of the shared memory).
#
#   scripts/test-s3.sh start [WATCH_PID]   prints the server's endpoint URL, then its folder
#   scripts/test-s3.sh stop DIR            stops the server whose files are in DIR
#
# The server is moto's (PyPI `moto`, its S3 part, with flask for the server: about 20 s and
# 115 MB to install, where `moto[server]` pulls every AWS service's dependencies for minutes),
# installed once with pip into $RAP_MOTO_DIR (default target/moto). Each start runs
# `python3 -m moto.server` on a free port of 127.0.0.1 (nothing listens elsewhere); it keeps
# everything in memory and accepts any credentials. With WATCH_PID, the server stops once that
# process exits (a test binary passes its own pid).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/lib/test-server.sh"
home="${RAP_MOTO_DIR:-$repo/target/moto}"
packages=("moto[s3]==5.2.5" "flask==3.1.3" "flask-cors==6.0.5")

install_once() {
  if [ ! -f "$home/.installed-5.2.5" ]; then
    pip_install "$home/site" "${packages[@]}"
    touch "$home/.installed-5.2.5"
  fi
}

start() {
  local watch="${1:-}"
  with_install_lock "$home" install_once
  local dir port
  dir="$(mktemp -d "${TMPDIR:-/tmp}/rap-s3.XXXXXX")"
  port="$(free_port)"
  PYTHONPATH="$home/site" nohup python3 -m moto.server -H 127.0.0.1 -p "$port" \
    </dev/null >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  local i
  for i in $(seq 1 150); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      cat "$dir/server.log" >&2; exit 1
    fi
    sleep 0.2
  done
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null || {
    echo "the S3 test server did not start listening on port $port:" >&2
    cat "$dir/server.log" >&2; kill "$(cat "$dir/pid")" 2>/dev/null; exit 1; }
  stop_when_gone "$watch" "$0" "$dir"
  echo "http://127.0.0.1:$port"
  echo "$dir"
}

stop() {
  local dir="$1"
  [ -f "$dir/pid" ] || { echo "no test S3 server in $dir" >&2; exit 1; }
  local pid i
  pid="$(cat "$dir/pid")"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 start [WATCH_PID] | stop DIR" >&2; exit 2 ;;
esac
