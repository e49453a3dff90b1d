# Shared by start.sh and stop.sh (sourced, not run).

# pid of a running daemon given its pid file, empty if not running.
running_pid() {
    local pidfile=$1 name=$2 pid
    [ -r "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
        echo "$pid"
    fi
}
