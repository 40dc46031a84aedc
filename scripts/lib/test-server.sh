# Shared by scripts/test-postgres.sh and scripts/test-s3.sh (sourced, not run): what every
# throwaway test server needs around its own start and stop.

# with_install_lock HOME COMMAND...: runs COMMAND (an install into HOME) under HOME's lock, so
# that of the test binaries starting servers in parallel one installs and the others wait.
with_install_lock() {
  local home="$1"; shift
  mkdir -p "$home"
  exec 9>"$home/.install.lock"
  flock 9
  "$@"
  flock -u 9
}

# pip_install TARGET PACKAGE...: quiet, into TARGET, also as root.
pip_install() {
  local target="$1"; shift
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --target "$target" "$@" >&2
}

# free_port: a free TCP port of 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# stop_when_gone PID SCRIPT DIR: runs `SCRIPT stop DIR` in the background once PID has exited
# (a test binary passes its own pid, so the server lives exactly as long as its tests).
stop_when_gone() {
  local watch="$1" script="$2" dir="$3"
  [ -n "$watch" ] || return 0
  nohup bash -c "while kill -0 $watch 2>/dev/null; do sleep 1; done; \"$script\" stop \"$dir\"" \
    </dev/null >/dev/null 2>&1 &
}
